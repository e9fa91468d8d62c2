"""Serializers the chat endpoints share: usage and attempts, and the output serializers'
fast path. An output serializer declares its fields (they document the answer in the
OpenAPI schema and in OPTIONS) and builds its representation in one function, since the
answer is the hub's own object, already checked."""

from __future__ import annotations

from rest_framework import serializers

from ..providers.base import ToolCall, ToolCallDelta
from ..routing.router import Attempt


class AttemptSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The model tried.")
    provider = serializers.CharField()
    route = serializers.CharField(help_text="The route the model came from (its fallback route's, past its chain).")
    outcome = serializers.CharField(
        help_text='"ok", "streaming", an error kind, "client_disconnected", or "skipped" (not called).'
    )
    latency_ms = serializers.IntegerField()
    error = serializers.CharField(required=False, help_text="The provider's error, when it failed.")
    reason = serializers.CharField(required=False, help_text='Why a skipped model was not called ("no tool support").')


class NativeUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()


class OpenAIUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class FastOutputSerializer(serializers.Serializer):
    """``represent(instance)`` builds the answer; the declared fields describe it."""

    def to_representation(self, instance):
        return self.represent(instance)

    def represent(self, instance) -> dict:
        raise NotImplementedError


def attempts_out(attempts: list[Attempt]) -> list[dict]:
    return [a.as_dict() for a in attempts]


def tool_calls_out(calls: tuple[ToolCall, ...]) -> list[dict]:
    """Whole tool calls in OpenAI's shape (``arguments`` a JSON string)."""
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls
    ]


def tool_deltas_out(deltas: tuple[ToolCallDelta, ...]) -> list[dict]:
    """OpenAI's ``delta.tool_calls``: a call's first piece names it (id, type, name, each
    sent once: the SDK's accumulator concatenates repeats), later ones add arguments."""
    out = []
    for d in deltas:
        if d.id is not None or d.name is not None:
            function = {"name": d.name or "", "arguments": d.arguments}
            out.append({"index": d.index, "id": d.id or "", "type": "function", "function": function})
        else:
            out.append({"index": d.index, "function": {"arguments": d.arguments}})
    return out


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(
        help_text="e.g. invalid_request_error, authentication_error, "
        "unknown_route, all_models_failed, rate_limit_exceeded"
    )
    message = serializers.CharField()
    param = serializers.CharField(required=False, help_text="The field at fault, e.g. messages[0].role.")
    attempts = AttemptSerializer(many=True, required=False)
    models = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="Each model's state and last error (503)."
    )


class NativeErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
    request_id = serializers.CharField(required=False)


class OpenAIErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    attempts = AttemptSerializer(many=True, required=False)


class OpenAIErrorSerializer(serializers.Serializer):
    error = OpenAIErrorDetailSerializer()
