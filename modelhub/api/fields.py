"""Serializer fields for chat bodies: strict JSON types (``"10"`` is not an integer and
``"yes"`` is not a boolean: a caller's mistake is named, not guessed at), and a message
list checked in one pass, so a 50-message conversation costs about what one message does
(a nested ``many=True`` serializer would build and validate a serializer per message).
Errors name the offending place, e.g. ``messages[3].role``."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.fields import SkipField, empty, get_error_detail
from rest_framework.utils import html
from rest_framework.utils.serializer_helpers import BindingDict

MAX_TOKENS_LIMIT = 1_000_000


class InputSerializer(serializers.Serializer):
    """Its fields are copied and bound once per class. DRF copies every declared field
    for every instance, and each copy points back at its serializer: per request that is
    a dozen objects built, then reference cycles left for the garbage collector. These
    fields keep no state between validations, so one bound set serves every request.

    A JSON body is validated by DRF's steps with one shortcut: an optional field with no
    default that the body does not name is passed over, where DRF would run its validation
    to have it raise SkipField. A chat body names three or four of its twenty fields."""

    @property
    def fields(self) -> BindingDict:
        cls = type(self)
        bound = cls.__dict__.get("_bound_fields")
        if bound is None:
            prototype = cls()
            bound = BindingDict(prototype)
            for name, field in prototype.get_fields().items():
                bound[name] = field
            cls._bound_fields = bound
        return bound

    def _field_plan(self) -> tuple:
        """(field, name, validate_<name> or None, passed over when absent) per writable field,
        in declaration order; built once per class. Empty (DRF's own loop) when a field takes
        its value from elsewhere than its own key or decides its own absence."""
        cls = type(self)
        plan = cls.__dict__.get("_field_plan_cache")
        if plan is None:
            writable = [field for field in self.fields.values() if not field.read_only]
            plan = tuple(
                (
                    field,
                    field.field_name,
                    "validate_" + field.field_name if hasattr(cls, "validate_" + field.field_name) else None,
                    not field.required and field.default is empty,
                )
                for field in writable
            )
            if not all(_plain_field(field) for field in writable):
                plan = ()
            cls._field_plan_cache = plan
        return plan

    def to_internal_value(self, data):
        plan = self._field_plan()
        if not plan or not isinstance(data, Mapping) or html.is_html_input(data) or self.partial:
            return super().to_internal_value(data)
        validated, errors = {}, {}
        for field, name, validate_method, optional in plan:
            value = data.get(name, empty)
            if value is empty and optional:
                continue
            try:
                value = field.run_validation(value)
                if validate_method is not None:
                    value = getattr(self, validate_method)(value)
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
            except DjangoValidationError as exc:
                errors[name] = get_error_detail(exc)
            except SkipField:
                pass
            else:
                validated[name] = value
        if errors:
            raise serializers.ValidationError(errors)
        return validated


# How DRF's own fields read a JSON body's key (they differ only for HTML form input, which
# the fast path leaves to DRF) and handle its absence.
_PLAIN_GET_VALUE = {serializers.Field.get_value, serializers.Serializer.get_value}


def _plain_field(field: serializers.Field) -> bool:
    kind = type(field)
    return (
        field.source_attrs == [field.field_name]
        and kind.get_value in _PLAIN_GET_VALUE
        and kind.get_default is serializers.Field.get_default
        and kind.validate_empty_values is serializers.Field.validate_empty_values
    )


def at(param: str, message: str) -> serializers.ValidationError:
    """A validation error that names a place inside a field (``messages[0].role``)."""
    return serializers.ValidationError({param: [message]})


def text_of(value, param: str) -> str:
    """A message content: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(value, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
            raise at(param, 'Content parts must be {"type": "text", "text": "..."}.')
        value = "".join(p["text"] for p in value)
    if not isinstance(value, str):
        raise at(param, "Must be a string.")
    if not value.strip():
        raise at(param, "Must not be empty.")
    return value


class TextField(serializers.Field):
    """A non-blank string (or text parts), kept exactly as sent."""

    def to_internal_value(self, data) -> str:
        return text_of(data, self.field_name)

    def to_representation(self, value):
        return value


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be a boolean."}

    def to_internal_value(self, data) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data) -> float:
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


def max_tokens_field(**kwargs) -> StrictIntegerField:
    message = f"Must be an integer from 1 to {MAX_TOKENS_LIMIT}."
    return StrictIntegerField(
        min_value=1,
        max_value=MAX_TOKENS_LIMIT,
        required=False,
        allow_null=True,
        error_messages={"invalid": message, "min_value": message, "max_value": message},
        **kwargs,
    )


def temperature_field() -> StrictFloatField:
    message = "Must be a number from 0 to 2."
    return StrictFloatField(
        min_value=0,
        max_value=2,
        required=False,
        allow_null=True,
        error_messages={"invalid": message, "min_value": message, "max_value": message},
    )


def route_name_field(**kwargs) -> StrictCharField:
    message = "Must be a route name or model id of 1 to 200 characters."
    errors = dict.fromkeys(("required", "invalid", "blank", "max_length", "null"), message)
    return StrictCharField(max_length=200, allow_blank=False, trim_whitespace=False, error_messages=errors, **kwargs)
