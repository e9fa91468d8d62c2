"""OpenAI's request shapes beyond plain text, checked and turned into the hub's types:
messages with images, tool calls and tool results; ``tools``, ``tool_choice``,
``response_format``, ``stop`` and ``metadata``. Both chat endpoints take these shapes.

Every check names the place at fault (``messages[2].tool_call_id``). A plain text message
takes the same short path as before; the rest is looked at only when it is there."""

from __future__ import annotations

import base64
import binascii
import re

from django.conf import settings
from rest_framework import serializers

from ..providers.base import ChatRequest, Image, Message, ResponseFormat, Tool, ToolCall
from .errors import RequestTooLarge
from .fields import InputSerializer, StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField, at

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
MAX_TOOLS = 128
MAX_STOP = 4
TOOL_CHOICES = ("auto", "none", "required")
ROLES = ("user", "assistant", "system", "developer", "tool")
SYSTEM_ROLES = ("system", "developer")  # "developer" is OpenAI's newer name for system


class ImageBudget:
    """The request's images, against the limits per image and per request (bytes decoded)."""

    __slots__ = ("used",)

    def __init__(self):
        self.used = 0

    def take(self, size: int, where: str) -> None:
        per_image, per_request = settings.MODELHUB["MAX_IMAGE_BYTES"], settings.MODELHUB["MAX_REQUEST_IMAGE_BYTES"]
        if size > per_image:
            raise RequestTooLarge(f"{where}: the image is {size} bytes, over the {per_image}-byte limit per image.")
        self.used += size
        if self.used > per_request:
            raise RequestTooLarge(f"{where}: the request's images pass the {per_request}-byte limit per request.")


def image_of(part: dict, where: str, budget: ImageBudget) -> Image:
    """An ``image_url`` part: a base64 ``data:`` URL of a known image type, or an https URL
    (which only providers that fetch URLs themselves are sent; the hub never fetches it)."""
    spec = part.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise at(f"{where}.image_url", 'Must be {"url": "data:image/...;base64,..." or "https://..."}.')
    url, detail = spec["url"], spec.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        raise at(f"{where}.image_url.detail", 'Must be "auto", "low" or "high".')
    if url.startswith("https://"):
        if len(url) > 2048:
            raise at(f"{where}.image_url.url", "An image URL may be at most 2048 characters.")
        return Image(url, detail=detail)
    match = DATA_URL.match(url)
    if match is None:
        raise at(f"{where}.image_url.url", "Must be a base64 data: URL or an https:// URL.")
    media_type, data = match["type"].lower(), match["data"]
    if media_type not in IMAGE_TYPES:
        raise at(f"{where}.image_url.url", f"Unsupported image type {media_type}; use one of {', '.join(IMAGE_TYPES)}.")
    budget.take(len(data) * 3 // 4, f"{where}.image_url")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise at(f"{where}.image_url.url", "The image's base64 data is not valid.") from None
    return Image(url, media_type, data, detail)


def parts_of(value: list, where: str, *, images: ImageBudget | None) -> tuple[str, tuple[Image, ...]]:
    """Content parts: text parts joined, and image parts where ``images`` allows them."""
    texts, found = [], []
    for i, part in enumerate(value):
        place = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and images is not None:
            found.append(image_of(part, place, images))
        elif kind == "image_url":
            raise at(place, "Images are taken in user messages only.")
        else:
            allowed = '{"type": "text", "text": "..."}' + (' or {"type": "image_url", ...}' if images else "")
            raise at(place, f"Must be {allowed}.")
    return "".join(texts), tuple(found)


def tool_calls_of(value, where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's ``tool_calls`` (OpenAI's shape; ``arguments`` a JSON string)."""
    if not isinstance(value, list) or not value:
        raise at(where, "Must be a non-empty list of tool calls.")
    calls = []
    for i, item in enumerate(value):
        place = f"{where}[{i}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or item.get("type", "function") != "function":
            raise at(place, 'Must be {"id", "type": "function", "function": {"name", "arguments"}}.')
        call_id, name, arguments = item.get("id"), function.get("name"), function.get("arguments", "")
        if not isinstance(call_id, str) or not call_id or len(call_id) > 1024:
            raise at(f"{place}.id", "Must be the call's id (a non-empty string).")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise at(f"{place}.function.name", "Must be a function name of 1-64 letters, digits, _ or -.")
        if not isinstance(arguments, str):
            raise at(f"{place}.function.arguments", "Must be the arguments as a JSON string.")
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def rich_message(item: dict, role: str, where: str, names: dict[str, str], images: ImageBudget) -> Message | str:
    """A message that is not plain text: a user turn with parts, an assistant turn with
    tool calls, or a tool result (whose function ``names`` finds by the call's id). A
    system turn comes back as its text."""
    content = item.get("content")
    if role == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise at(f"{where}.tool_call_id", "A tool message needs the tool_call_id it answers.")
        if call_id not in names:
            raise at(f"{where}.tool_call_id", f"No earlier assistant tool call has the id {call_id!r}.")
        text = _text(content, f"{where}.content", blank=True)
        return Message("tool", text, tool_call_id=call_id, name=names[call_id])
    if role == "assistant":
        calls = tool_calls_of(item["tool_calls"], f"{where}.tool_calls") if item.get("tool_calls") else ()
        names.update((call.id, call.name) for call in calls)
        text = "" if content is None and calls else _text(content, f"{where}.content", blank=bool(calls))
        return Message("assistant", text, tool_calls=calls)
    if role == "user" and isinstance(content, list):
        text, found = parts_of(content, f"{where}.content", images=images)
        if not text.strip() and not found:
            raise at(f"{where}.content", "Must not be empty.")
        return Message("user", text, images=found)
    return _text(content, f"{where}.content", blank=False)  # system / developer, or a user string


def _text(value, where: str, *, blank: bool) -> str:
    if isinstance(value, list):
        value = parts_of(value, where, images=None)[0]
    if not isinstance(value, str):
        raise at(where, "Must be a string.")
    if not blank and not value.strip():
        raise at(where, "Must not be empty.")
    return value


class MessagesField(serializers.Field):
    """``[{"role", "content", ...}, ...]`` in one pass, to (messages, system text): system
    messages join the system prompt; at least one user or assistant message remains. A
    plain text message costs what it always did; images, tool calls and tool results are
    parsed where they appear."""

    default_error_messages = {"invalid": "Must be a non-empty list of messages."}

    def __init__(self, *, max_messages: int = 1000, **kwargs):
        self.max_messages = max_messages
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> tuple[tuple[Message, ...], str | None]:
        if not isinstance(data, list) or not data:
            self.fail("invalid")
        if len(data) > self.max_messages:
            raise serializers.ValidationError(f"At most {self.max_messages} messages.")
        messages: list[Message] = []
        system: list[str] = []
        names: dict[str, str] = {}  # tool call id -> function name, for the tool results
        images = ImageBudget()
        for i, item in enumerate(data):
            where = f"{self.field_name}[{i}]"
            if not isinstance(item, dict):
                raise at(where, "Must be an object with role and content.")
            role, content = item.get("role"), item.get("content")
            if role not in ROLES:
                raise at(f"{where}.role", f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
            if isinstance(content, str) and role != "tool" and not item.get("tool_calls"):
                if not content.strip():
                    raise at(f"{where}.content", "Must not be empty.")
                message: Message | str = content if role in SYSTEM_ROLES else Message(role, content)
            else:
                message = rich_message(item, role, where, names, images)
            if isinstance(message, str):
                if role not in SYSTEM_ROLES:  # a user turn given as text parts
                    message = Message(role, message)
                else:
                    system.append(message)
                    continue
            messages.append(message)
        if not messages:
            raise serializers.ValidationError("At least one user or assistant message is needed.")
        return tuple(messages), "\n\n".join(system) or None

    def to_representation(self, value):
        return value


class ToolsField(serializers.Field):
    """``[{"type": "function", "function": {name, description?, parameters?, strict?}}]``."""

    def to_internal_value(self, data) -> tuple[Tool, ...]:
        if not isinstance(data, list):
            raise serializers.ValidationError("Must be a list of tools.")
        if len(data) > MAX_TOOLS:
            raise serializers.ValidationError(f"At most {MAX_TOOLS} tools.")
        tools, seen = [], set()
        for i, item in enumerate(data):
            place = f"{self.field_name}[{i}]"
            function = item.get("function") if isinstance(item, dict) else None
            if not isinstance(function, dict) or item.get("type") != "function":
                raise at(place, 'Must be {"type": "function", "function": {"name", "parameters", ...}}.')
            name, description = function.get("name"), function.get("description", "")
            parameters, strict = function.get("parameters"), function.get("strict")
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                raise at(f"{place}.function.name", "Must be a function name of 1-64 letters, digits, _ or -.")
            if name in seen:
                raise at(f"{place}.function.name", f"Two tools are named {name!r}.")
            seen.add(name)
            if not isinstance(description, str):
                raise at(f"{place}.function.description", "Must be a string.")
            is_object = isinstance(parameters, dict) and parameters.get("type", "object") == "object"
            if parameters is not None and not is_object:
                raise at(f"{place}.function.parameters", 'Must be a JSON schema of "type": "object".')
            if strict is not None and not isinstance(strict, bool):
                raise at(f"{place}.function.strict", "Must be a boolean.")
            tools.append(Tool(name, description, parameters, strict))
        return tuple(tools)

    def to_representation(self, value):
        return value


class ToolChoiceField(serializers.Field):
    """ "auto", "none", "required", or ``{"type": "function", "function": {"name"}}`` (to
    (choice, name)); which tool a name must be is checked against ``tools`` by the caller."""

    def to_internal_value(self, data) -> tuple[str, str | None]:
        if data in TOOL_CHOICES:
            return data, None
        function = data.get("function") if isinstance(data, dict) and data.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise serializers.ValidationError(
                'Must be "auto", "none", "required" or {"type": "function", "function": {"name": "..."}}.'
            )
        return "function", name

    def to_representation(self, value):
        return value


class ResponseFormatField(serializers.Field):
    """``{"type": "text"}`` (None), ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {name, schema, strict?}}``."""

    def to_internal_value(self, data) -> ResponseFormat | None:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            return ResponseFormat("json_object")
        if kind != "json_schema":
            raise serializers.ValidationError(
                'Must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}.'
            )
        spec = data.get("json_schema")
        if not isinstance(spec, dict):
            raise at(f"{self.field_name}.json_schema", 'Must be {"name": "...", "schema": {...}}.')
        name, schema, strict = spec.get("name"), spec.get("schema"), spec.get("strict")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise at(f"{self.field_name}.json_schema.name", "Must be a name of 1-64 letters, digits, _ or -.")
        if not isinstance(schema, dict):
            raise at(f"{self.field_name}.json_schema.schema", "Must be a JSON schema (an object).")
        if strict is not None and not isinstance(strict, bool):
            raise at(f"{self.field_name}.json_schema.strict", "Must be a boolean.")
        return ResponseFormat("json_schema", schema, name, strict)

    def to_representation(self, value):
        return value


class StopField(serializers.Field):
    """A string or up to four strings, to a tuple."""

    def to_internal_value(self, data) -> tuple[str, ...]:
        stops = [data] if isinstance(data, str) else data
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOP:
            raise serializers.ValidationError(f"Must be a non-empty string or a list of up to {MAX_STOP} of them.")
        return tuple(stops)

    def to_representation(self, value):
        return value


class MetadataField(serializers.Field):
    """Up to 16 string pairs (OpenAI's limits: keys 64 characters, values 512)."""

    def to_internal_value(self, data) -> dict:
        if (
            not isinstance(data, dict)
            or len(data) > 16
            or not all(isinstance(k, str) and len(k) <= 64 for k in data)
            or not all(isinstance(v, str) and len(v) <= 512 for v in data.values())
        ):
            raise serializers.ValidationError("Must be up to 16 string keys (64 chars) to string values (512 chars).")
        return data

    def to_representation(self, value):
        return value


def tool_choice_check(tools: tuple[Tool, ...], choice: tuple[str, str | None] | None) -> None:
    """A tool choice other than auto/none needs tools; a named one, a tool of that name."""
    if choice is None or choice[0] in ("auto", "none"):
        return
    if not tools:
        raise serializers.ValidationError({"tool_choice": "A tool choice other than auto or none needs tools."})
    if choice[1] is not None and all(tool.name != choice[1] for tool in tools):
        raise serializers.ValidationError({"tool_choice": f"No tool is named {choice[1]!r}."})


def _float_field(low: float, high: float) -> StrictFloatField:
    message = f"Must be a number from {low:g} to {high:g}."
    errors = {"invalid": message, "min_value": message, "max_value": message}
    return StrictFloatField(min_value=low, max_value=high, required=False, allow_null=True, error_messages=errors)


class RequestOptions(InputSerializer):
    """What both chat endpoints take besides messages, in OpenAI's shapes: tools, JSON
    output and the common sampling parameters (each sent where the model takes it)."""

    tools = ToolsField(required=False, allow_null=True)
    tool_choice = ToolChoiceField(required=False, allow_null=True)
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    response_format = ResponseFormatField(required=False, allow_null=True)
    stop = StopField(required=False, allow_null=True)
    top_p = _float_field(0, 1)
    seed = StrictIntegerField(required=False, allow_null=True, error_messages={"invalid": "Must be an integer."})
    presence_penalty = _float_field(-2, 2)
    frequency_penalty = _float_field(-2, 2)
    user = StrictCharField(
        required=False, allow_null=True, max_length=256, error_messages={"max_length": "At most 256 characters."}
    )
    metadata = MetadataField(required=False, allow_null=True)

    def chat_request(self, attrs: dict, messages: tuple[Message, ...], system: str | None, max_tokens) -> ChatRequest:
        tools = attrs.get("tools") or ()
        choice = attrs.get("tool_choice")
        tool_choice_check(tools, choice)
        return ChatRequest(
            messages=messages,
            system=system,
            max_tokens=max_tokens,
            temperature=attrs.get("temperature"),
            tools=tools,
            tool_choice=choice[0] if choice else None,
            tool_choice_name=choice[1] if choice else None,
            parallel_tool_calls=attrs.get("parallel_tool_calls"),
            response_format=attrs.get("response_format"),
            stop=attrs.get("stop") or (),
            top_p=attrs.get("top_p"),
            seed=attrs.get("seed"),
            presence_penalty=attrs.get("presence_penalty"),
            frequency_penalty=attrs.get("frequency_penalty"),
            user=attrs.get("user"),
            metadata=attrs.get("metadata"),
        )
