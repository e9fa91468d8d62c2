"""Google Gemini (Generative Language API) wire format.

Beyond text it speaks function calling (``tools[].functionDeclarations`` with ``parameters``, Gemini's
OpenAPI Schema, or ``parametersJsonSchema``; ``toolConfig``; ``functionCall`` and ``functionResponse``
parts), inline images and JSON output (``generationConfig.responseMimeType`` with ``responseJsonSchema``
or ``responseSchema``), and answers a 400 in Gemini's shape for what the real API refuses and a
translation could get wrong. google-genai passes some nested objects through as given, so their keys
may come snake_case (``parameters_json_schema``, ``mime_type``): the API takes both spellings, and so
does this wire.

Gemini 2.5 and later sign their function calls (``thoughtSignature``); a later request to such a model
whose current turn holds a call without its signature is refused, as the real API refuses it."""

from __future__ import annotations

import base64
import binascii
import json
import re

from .asgi import dumps, header, next_id, query_param
from .reply import Reply, Request, count_words, display_name, int_or_none

CONTEXT_WINDOW = 1_048_576
VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
ACTIONS = {"generateContent": False, "streamGenerateContent": True}  # action -> streamed
_ERRORS = {  # status -> (status name, message)
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
IMAGE_TOKENS = 258  # what Gemini counts for an image of up to 384 px a side
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
FILES_API = "https://generativelanguage.googleapis.com/"
SIGNING_MODELS = ("gemini-2.5", "gemini-3")
SIGNATURE_PREFIX = b"sim-thought-signature:"
SIGNATURE_SKIP = "skip_thought_signature_validator"
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
CALLING_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
FORCING_MODES = frozenset({"ANY", "VALIDATED"})
_SCHEMA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.Schema"
# The fields of Gemini's OpenAPI Schema (proto names and their JSON names).
OPENAPI_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "properties",
        "required",
        "items",
        "example",
        "default",
        "pattern",
        "minimum",
        "maximum",
        *("anyOf", "any_of", "propertyOrdering", "property_ordering"),
        *("minItems", "min_items", "maxItems", "max_items", "minLength", "min_length", "maxLength", "max_length"),
        *("minProperties", "min_properties", "maxProperties", "max_properties"),
    }
)
OPENAPI_TYPES = frozenset({"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
# Where JSON Schema nests schemas: maps of them, single ones, lists of them.
_JSON_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_JSON_SCHEMA_ONES = (
    *("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"),
    *("additionalItems", "unevaluatedItems", "unevaluatedProperties"),
)
_JSON_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"


def _error(status: int, message: str | None = None) -> dict:
    name, text = _ERRORS.get(
        status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", f"Simulated error {status}.")
    )
    return {"error": {"code": status, "message": message or text, "status": name}}


def _sse(payload) -> bytes:
    return b"data: " + dumps(payload) + b"\r\n\r\n"


class GeminiWire:
    name = "gemini"
    stream_error_event = _sse(_error(503))
    garbage_event = b'data: {"candidates": [{"content": {"parts"\r\n\r\n'

    def api_key(self, scope) -> str | None:
        return header(scope, b"x-goog-api-key") or query_param(scope, "key")

    def error(self, status: int, message: str | None = None) -> bytes:
        return dumps(_error(status, message))

    def context_error(self, input_tokens: int) -> bytes:
        message = (
            f"The input token count ({CONTEXT_WINDOW + input_tokens}) exceeds the maximum "
            f"number of tokens allowed ({CONTEXT_WINDOW})."
        )
        return dumps(_error(400, message))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request(model or "", stream, problem="Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return Request(model, stream, problem="* GenerateContentRequest.contents: contents is not specified")
        system = body.get("systemInstruction")
        words = count_words(system.get("parts")) if isinstance(system, dict) else 0
        plain = True  # text parts only: the fast path
        for content in contents:
            parts = content.get("parts") if isinstance(content, dict) else None
            if isinstance(parts, list):
                for part in parts:
                    text = part.get("text") if isinstance(part, dict) else None
                    if isinstance(text, str):
                        words += len(text.split())
                    else:
                        plain = False
        config = body.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        request = Request(model, stream, max(words, 1), int_or_none(config.get("maxOutputTokens")))
        if not plain:
            _read_parts(request, contents)
        if "tools" in body or "toolConfig" in body:
            _read_tools(request, body)
        if "responseMimeType" in config or "responseJsonSchema" in config or "responseSchema" in config:
            _read_json_output(request, config)
        return request

    def completion(self, reply: Reply) -> bytes:
        if reply.tool_call:
            return dumps(_chunk(reply, [_call_part(reply)], next_id("sim-"), final=True))
        return dumps(_chunk(reply, [{"text": reply.text}], next_id("sim-"), final=True))

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail); the last content chunk carries finishReason and usage.
        A function call comes whole in one chunk, as Gemini streams it."""
        response_id, last = next_id("sim-"), len(reply.chunks) - 1
        if reply.tool_call:
            return [], [_sse(_chunk(reply, [_call_part(reply)], response_id, final=True))], []
        return (
            [],
            [_sse(_chunk(reply, [{"text": c}], response_id, final=i == last)) for i, c in enumerate(reply.chunks)],
            [],
        )

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "models": [
                    {
                        "name": f"models/{i}",
                        "version": "001",
                        "displayName": display_name(i),
                        "description": f"Simulated {display_name(i)}",
                        "inputTokenLimit": CONTEXT_WINDOW,
                        "outputTokenLimit": 65_536,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                    for i in ids
                ]
            }
        )


def _chunk(reply: Reply, parts: list[dict], response_id: str, final: bool) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    chunk: dict = {"candidates": [candidate], "modelVersion": reply.model, "responseId": response_id}
    if final:
        candidate["finishReason"] = "MAX_TOKENS" if reply.truncated else "STOP"  # STOP also after a call
        chunk["usageMetadata"] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.total_tokens,
        }
    return chunk


def _call_part(reply: Reply) -> dict:
    assert reply.tool_call is not None
    name, args = reply.tool_call
    part: dict = {"functionCall": {"name": name, "args": args if isinstance(args, dict) else {}}}
    if _signs(reply.model):
        part["thoughtSignature"] = base64.b64encode(SIGNATURE_PREFIX + name.encode()).decode()
    return part


def _signs(model: str | None) -> bool:
    return model is not None and model.startswith(SIGNING_MODELS)


def _field(value: dict, camel: str, snake: str):
    """A field under either of the names the API takes for it."""
    found = value.get(camel)
    return value.get(snake) if found is None else found


def _problem(request: Request, problem: str | None) -> None:
    if problem and request.problem is None:
        request.problem = problem


def _invalid(where: str, kind: str, value) -> str:
    return f"Invalid value at '{where}' ({kind}), {json.dumps(value)}"


# -- contents --


def _read_parts(request: Request, contents: list) -> None:
    """Images, the closing tool result, and the checks on non-text parts; for a signing model,
    that every model step of the current turn (since the last user input other than function
    responses) has its first function call signed."""
    unsigned: list[tuple[str, int]] = []  # (function, position) of unsigned steps in the current turn
    last = len(contents) - 1
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            continue
        model_turn, first_call = content.get("role") == "model", True
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                continue
            where = f"contents[{i}].parts[{j}]"
            if "functionCall" in part:
                _problem(request, _call_problem(part, where, request.model))
                if first_call and model_turn and not part.get("thoughtSignature"):
                    unsigned.append((_call_name(part["functionCall"]), i + 1))
                first_call = False
                continue
            if "functionResponse" in part:
                _problem(request, _response_problem(part["functionResponse"], where))
                if i == last and isinstance(part["functionResponse"], dict):
                    request.tool_result = json.dumps(part["functionResponse"].get("response"))
                continue
            if not model_turn:
                unsigned.clear()  # new user input: a new turn
            if "inlineData" in part:
                _problem(request, _inline_problem(part["inlineData"], where))
                request.images += 1
            elif "fileData" in part:
                uri = _field(part["fileData"], "fileUri", "file_uri") if isinstance(part["fileData"], dict) else None
                if not (isinstance(uri, str) and uri.startswith(FILES_API)):
                    _problem(request, f"Unsupported file uri: {uri}. Use the Files API or inline data.")
    request.input_tokens += request.images * IMAGE_TOKENS
    if unsigned and _signs(request.model):
        name, position = unsigned[0]
        _problem(
            request,
            "Function call is missing a thought_signature in functionCall parts. This is required for tools "
            "to work correctly, and missing thought_signature may lead to degraded model performance. "
            f"Additional data, function call `{name}` , position {position}. Please refer to {_DOCS} for more details.",
        )


def _call_problem(part: dict, where: str, model: str) -> str | None:
    call = part["functionCall"]
    if not isinstance(call, dict):
        return _invalid(
            f"{where}.function_call", "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCall", call
        )
    if not isinstance(call.get("name"), str) or not call["name"]:
        return f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty."
    if "args" in call and not isinstance(call["args"], dict):
        return _invalid(f"{where}.function_call.args", "type.googleapis.com/google.protobuf.Struct", call["args"])
    signature = part.get("thoughtSignature")
    if signature == SIGNATURE_SKIP:  # Google's documented stand-in for a signature not known
        return None
    if signature is not None and _signs(model) and _bytes(signature) != SIGNATURE_PREFIX + call["name"].encode():
        return f"Thought signature is not valid. ({where}.thought_signature)"
    return None


def _call_name(call) -> str:
    return str(call.get("name")) if isinstance(call, dict) else ""


def _response_problem(response, where: str) -> str | None:
    if not isinstance(response, dict):
        return _invalid(
            f"{where}.function_response",
            "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionResponse",
            response,
        )
    if not isinstance(response.get("name"), str) or not response["name"]:
        return f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty."
    if not isinstance(response.get("response"), dict):
        return _invalid(
            f"{where}.function_response.response",
            "type.googleapis.com/google.protobuf.Struct",
            response.get("response"),
        )
    return None


def _inline_problem(blob, where: str) -> str | None:
    if not isinstance(blob, dict):
        return _invalid(f"{where}.inline_data", "type.googleapis.com/google.ai.generativelanguage.v1beta.Blob", blob)
    mime_type, data = _field(blob, "mimeType", "mime_type"), blob.get("data")
    if not isinstance(mime_type, str) or not mime_type:
        return f"* GenerateContentRequest.{where}.inline_data.mime_type: MIME type is required."
    if mime_type.startswith("image/") and mime_type not in IMAGE_TYPES:
        return f"Unsupported MIME type: {mime_type}"
    if not isinstance(data, str) or not data or not _bytes(data):
        return (
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
            f"Base64 decoding failed for {json.dumps(data[:40] if isinstance(data, str) else data)}"
        )
    return None


def _bytes(value) -> bytes:
    """A proto bytes field's JSON: base64, standard or URL-safe (google-genai sends the latter),
    padded or not; empty when it is not base64."""
    if not isinstance(value, str):
        return b""
    try:
        padded = value + "=" * (-len(value) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return b""


# -- tools --


def _read_tools(request: Request, body: dict) -> None:
    tools = body.get("tools")
    declared: list[tuple[str, dict]] = []
    if tools is not None and not isinstance(tools, list):
        _problem(request, _invalid("tools", "type.googleapis.com/google.ai.generativelanguage.v1beta.Tool", tools))
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        declarations = _field(tool, "functionDeclarations", "function_declarations") if isinstance(tool, dict) else None
        for j, declaration in enumerate(declarations if isinstance(declarations, list) else ()):
            where = f"tools[{i}].function_declarations[{j}]"
            problem, tool_schema = _declaration(declaration, where, {name for name, _ in declared})
            _problem(request, problem)
            if problem is None:
                declared.append((declaration["name"], tool_schema))
    request.tools = tuple(declared)
    config = body.get("toolConfig")
    if config is not None:
        _read_tool_config(request, config)


def _declaration(declaration, where: str, names: set[str]) -> tuple[str | None, dict]:
    """(the problem with a function declaration or None, its parameters' schema)."""
    if not isinstance(declaration, dict):
        kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionDeclaration"
        return _invalid(where, kind, declaration), {}
    name = declaration.get("name")
    if not isinstance(name, str) or not name:
        return f"* GenerateContentRequest.{where}.name: Name cannot be empty.", {}
    if not FUNCTION_NAME.match(name):
        return (
            f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a letter or an "
            "underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), "
            "with a maximum length of 64.",
            {},
        )
    if name in names:
        return f"* GenerateContentRequest.{where}.name: Duplicate function declaration found: {name}", {}
    schema = declaration.get("parameters")
    json_schema = _field(declaration, "parametersJsonSchema", "parameters_json_schema")
    if schema is not None and json_schema is not None:
        return f"* GenerateContentRequest.{where}: parameters and parameters_json_schema are mutually exclusive.", {}
    if schema is not None:
        return _openapi_problem(schema, f"{where}.parameters"), schema
    if json_schema is not None:
        return _json_schema_problem(json_schema, f"{where}.parameters_json_schema"), json_schema
    return None, {"type": "object"}


def _read_tool_config(request: Request, config) -> None:
    calling = _field(config, "functionCallingConfig", "function_calling_config") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return
    mode = calling.get("mode", "AUTO")
    names = _field(calling, "allowedFunctionNames", "allowed_function_names")
    where = "tool_config.function_calling_config"
    if mode not in CALLING_MODES:
        kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode"
        return _problem(request, _invalid(f"{where}.mode", kind, mode))
    if mode in FORCING_MODES and not request.tools:
        return _problem(
            request, f"* GenerateContentRequest.{where}: function calling config is set without function_declarations."
        )
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return _problem(request, _invalid(f"{where}.allowed_function_names", "TYPE_STRING", names))
    if names:
        if mode not in FORCING_MODES:
            return _problem(
                request,
                f"* GenerateContentRequest.{where}.allowed_function_names: only allowed when mode is ANY or VALIDATED.",
            )
        declared = {name for name, _ in request.tools}
        unknown = [name for name in names if name not in declared]
        if unknown:
            return _problem(
                request,
                f"* GenerateContentRequest.{where}.allowed_function_names: {unknown[0]} is not a declared function.",
            )
        request.tool_forced = names[0]
    request.tools_off = mode == "NONE"


# -- JSON output --


def _read_json_output(request: Request, config: dict) -> None:
    mime_type = config.get("responseMimeType")
    json_schema, schema = config.get("responseJsonSchema"), config.get("responseSchema")
    where = "generation_config"
    if json_schema is not None and schema is not None:
        return _problem(
            request,
            f"* GenerateContentRequest.{where}: response_schema and response_json_schema are mutually exclusive.",
        )
    if (json_schema is not None or schema is not None) and mime_type not in ("application/json", "text/x.enum"):
        return _problem(
            request,
            f"* GenerateContentRequest.{where}.response_mime_type: response_mime_type must be application/json "
            "or text/x.enum when a response schema is set.",
        )
    if json_schema is not None:
        _problem(request, _json_schema_problem(json_schema, f"{where}.response_json_schema"))
    elif schema is not None:
        _problem(request, _openapi_problem(schema, f"{where}.response_schema"))
    if mime_type == "application/json":
        chosen = json_schema if json_schema is not None else schema
        request.json_schema = chosen if isinstance(chosen, dict) else {}


# -- schemas --


def _openapi_problem(schema, where: str) -> str | None:
    """What Gemini's OpenAPI Schema refuses: an unknown keyword (its proto has no such field), a
    type that is not one name, an enum that is not strings."""
    if not isinstance(schema, dict):
        return _invalid(where, _SCHEMA_TYPE, schema)
    for key in schema:
        if key not in OPENAPI_FIELDS:
            return f"Invalid JSON payload received. Unknown name {json.dumps(key)} at '{where}': Cannot find field."
    kind = schema.get("type")
    if kind is not None and not (isinstance(kind, str) and kind.upper() in OPENAPI_TYPES):
        return _invalid(f"{where}.type", "type.googleapis.com/google.ai.generativelanguage.v1beta.Type", kind)
    for k, value in enumerate(schema.get("enum") or ()):
        if not isinstance(value, str):
            return _invalid(f"{where}.enum[{k}]", "TYPE_STRING", value)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for k, sub in enumerate(properties.values()):
            problem = _openapi_problem(sub, f"{where}.properties[{k}].value")
            if problem:
                return problem
    if "items" in schema:
        problem = _openapi_problem(schema["items"], f"{where}.items")
        if problem:
            return problem
    for k, sub in enumerate(_field(schema, "anyOf", "any_of") or ()):
        problem = _openapi_problem(sub, f"{where}.any_of[{k}]")
        if problem:
            return problem
    return None


def _json_schema_problem(root, where: str) -> str | None:
    """What Gemini's JSON Schema fields refuse: a schema that is not an object, a ``$ref`` beside
    keywords not starting with ``$``, a ``$ref`` to no schema in the document."""
    if not isinstance(root, dict):
        return _invalid(where, "type.googleapis.com/google.protobuf.Value", root)
    stack: list[tuple[dict, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        ref = node.get("$ref")
        if isinstance(ref, str):
            if any(not key.startswith("$") for key in node):
                return (
                    f"$ref '{ref}' at {path or '(root)'} was set alongside unsupported fields. If a schema node has "
                    "$ref set, then only properties starting with $ may be set alongside it."
                )
            if _resolve(root, ref) is None:
                return f"reference to undefined schema at {path or '(root)'}"
        stack.extend(_json_subschemas(node, path))
    return None


def _json_subschemas(node: dict, path: str):
    def at(*keys) -> str:
        return ".".join((path, *map(str, keys))) if path else ".".join(map(str, keys))

    for key in _JSON_SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            yield from ((sub, at(key, name)) for name, sub in node[key].items() if isinstance(sub, dict))
    for key in _JSON_SCHEMA_ONES:
        if isinstance(node.get(key), dict):
            yield node[key], at(key)
    for key in _JSON_SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            yield from ((sub, at(key, k)) for k, sub in enumerate(node[key]) if isinstance(sub, dict))


def _resolve(root: dict, ref: str):
    """The schema a local ``$ref`` (a JSON pointer) names in the document, or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node if isinstance(node, dict) else None


GEMINI = GeminiWire()
