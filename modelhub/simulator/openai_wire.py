"""OpenAI Chat Completions wire format (also served for OpenAI-compatible hosts)."""

from __future__ import annotations

import time

from .asgi import bearer, dumps, next_id, sse
from .reply import Reply, Request, count_words, int_or_none

CONTEXT_WINDOW = 128_000
# Body keys that ask for more than text; a body without any (and with plain messages) is
# parsed on the fast path.
_RICH_KEYS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format"})
_IMAGE_URL_SCHEMES = ("data:image/", "https://", "http://")
IMAGE_TOKENS = 85  # what OpenAI counts for a low-detail image
_ERRORS = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Access denied."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class OpenAIWire:
    stream_error_event = sse(_error(_ERRORS[500][2], "server_error"))
    garbage_event = b'data: {"id": "chatcmpl-sim", "choices": [{"delta"\n\n'

    def __init__(self, name: str, owned_by: str):
        self.name = name
        self.owned_by = owned_by

    def api_key(self, scope) -> str | None:
        return bearer(scope)

    def error(self, status: int, message: str | None = None) -> bytes:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        type_, code, text = _ERRORS.get(status, (default_type, None, f"Simulated error {status}."))
        return dumps(_error(message or text, type_, code))

    def context_error(self, input_tokens: int) -> bytes:
        message = (
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your "
            f"messages resulted in {CONTEXT_WINDOW + input_tokens} tokens. "
            "Please reduce the length of the messages."
        )
        return dumps(_error(message, "invalid_request_error", "context_length_exceeded", "messages"))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request("", problem="We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return Request("", problem="you must provide a model parameter")
        stream = bool(body.get("stream"))
        if not isinstance(messages, list) or not messages:
            return Request(model, stream, problem="Missing required parameter: 'messages'.")
        words, plain = 0, _RICH_KEYS.isdisjoint(body)
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if type(content) is str and len(message) == 2:  # {"role", "content"}: plain text
                words += len(content.split())
            else:
                plain = False
                words += count_words(content)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        request = Request(model, stream, max(words, 1), int_or_none(limit))
        return request if plain else _parse_rich(body, messages, request)

    def completion(self, reply: Reply) -> bytes:
        message = (
            {"role": "assistant", "content": reply.text, "refusal": None}
            if reply.tool_call is None
            else {
                "role": "assistant",
                "content": None,
                "tool_calls": [_tool_call(reply.tool_call[0], reply.arguments_json)],
                "refusal": None,
            }
        )
        return dumps(
            {
                "id": next_id("chatcmpl-sim"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                "system_fingerprint": "fp_simulator",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}],
                "usage": _usage(reply),
            }
        )

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail) of a streamed answer. A tool call streams as
        OpenAI's does: its id, type and name once in the first chunk, then the arguments in
        fragments, each under the call's ``index``."""
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = {
            "id": next_id("chatcmpl-sim"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model,
            "system_fingerprint": "fp_simulator",
        }
        if with_usage:
            base["usage"] = None

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        tail = [chunk({}, _finish(reply))]
        if with_usage:
            tail.append(sse({**base, "choices": [], "usage": _usage(reply)}))
        tail.append(b"data: [DONE]\n\n")
        if reply.tool_call is None:
            return [chunk({"role": "assistant", "content": ""})], [chunk({"content": c}) for c in reply.chunks], tail
        call = {"index": 0, **_tool_call(reply.tool_call[0], "")}
        first = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        pieces = [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in reply.arguments_pieces]
        return [chunk(first)], pieces, tail

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "object": "list",
                "data": [
                    {"id": i, "object": "model", "created": 1_700_000_000, "owned_by": self.owned_by} for i in ids
                ],
            }
        )


def _finish(reply: Reply) -> str:
    if reply.tool_call is not None:
        return "tool_calls"
    return "length" if reply.truncated else "stop"


def _tool_call(name: str, arguments: str) -> dict:
    """A call as OpenAI answers it, under an id of its own."""
    return {"id": next_id("call_sim"), "type": "function", "function": {"name": name, "arguments": arguments}}


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens,
    }


# -- tools, images, JSON output: parsed only for a request that uses them --


class _Invalid(ValueError):
    """A request the real API answers with a 400; the message is OpenAI's own."""


def _parse_rich(body: dict, messages: list, request: Request) -> Request:
    try:
        request.tools = _tools(body.get("tools"))
        _tool_choice(body, request)
        request.json_schema = _json_output(body.get("response_format"))
        request.images, request.tool_result = _conversation(messages)
    except _Invalid as exc:
        request.problem = str(exc)
    request.input_tokens += IMAGE_TOKENS * request.images
    return request


def _tools(tools) -> tuple[tuple[str, dict], ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _Invalid("Invalid type for 'tools': expected an array.")
    if not tools:
        raise _Invalid("Invalid 'tools': empty array. Expected an array with minimum length 1.")
    return tuple(_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools))


def _tool(tool, where: str) -> tuple[str, dict]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise _Invalid(f"Invalid value for '{where}.type': expected 'function'.")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise _Invalid(f"Missing required parameter: '{where}.function.name'.")
    parameters = function.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _Invalid(f"Invalid type for '{where}.function.parameters': expected an object.")
    return function["name"], parameters


def _tool_choice(body: dict, request: Request) -> None:
    for key in ("tool_choice", "parallel_tool_calls"):
        if key in body and not request.tools:
            raise _Invalid(f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified.")
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "required"):
        return
    if choice == "none":
        request.tools_off = True
        return
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if name not in {tool[0] for tool in request.tools}:
        raise _Invalid("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function of 'tools'.")
    request.tool_forced = name


def _json_output(response_format) -> dict | None:
    """The schema JSON output must follow ({} for any JSON object), or None for text."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind != "json_schema":
        raise _Invalid(f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise _Invalid("Missing required parameter: 'response_format.json_schema.name'.")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise _Invalid("Invalid type for 'response_format.json_schema.schema': expected an object.")
    return schema


def _conversation(messages: list) -> tuple[int, str | None]:
    """(images, the text of the tool result that ends the conversation or None), checking
    that tool results answer the calls of the assistant turn just before them, all of them."""
    images = 0
    unanswered: set[str] | None = None  # ids of the calls being answered; None outside tool results
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            _answer(unanswered, message.get("tool_call_id"))
            continue
        _all_answered(unanswered)
        calls = message.get("tool_calls")
        unanswered = _call_ids(calls, f"messages[{i}]") if role == "assistant" and calls is not None else None
        if isinstance(message.get("content"), list):
            images += _images(message["content"], role, f"messages[{i}]")
    _all_answered(unanswered)
    last = messages[-1]
    result = isinstance(last, dict) and last.get("role") == "tool"
    return images, _text(last.get("content")) if result else None


def _answer(unanswered: set[str] | None, call_id) -> None:
    if unanswered is None:
        raise _Invalid(
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
        )
    if call_id not in unanswered:
        raise _Invalid(
            f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of previous message."
        )
    unanswered.discard(call_id)


def _all_answered(unanswered: set[str] | None) -> None:
    if unanswered:
        missing = ", ".join(sorted(unanswered))
        raise _Invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {missing}"
        )


def _call_ids(calls, where: str) -> set[str]:
    if not isinstance(calls, list):
        raise _Invalid(f"Invalid type for '{where}.tool_calls': expected an array.")
    ids = set()
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or call.get("type") != "function":
            raise _Invalid(f"Missing required parameter: '{at}.type'.")
        function = call.get("function")
        if not isinstance(call.get("id"), str) or not isinstance(function, dict) or not function.get("name"):
            raise _Invalid(f"Missing required parameter: '{at}.id' or '{at}.function.name'.")
        if not isinstance(function.get("arguments"), str):
            raise _Invalid(f"Invalid type for '{at}.function.arguments': expected a string.")
        ids.add(call["id"])
    return ids


def _images(parts: list, role, where: str) -> int:
    images = 0
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _Invalid(f"Missing required parameter: '{where}.content[{j}].text'.")
            continue
        if kind != "image_url":
            raise _Invalid(f"Invalid value: '{kind}'. Supported values are: 'text' and 'image_url'.")
        if role != "user":
            raise _Invalid(
                f"Image URLs are only allowed for messages with role 'user', but this message with role '{role}' "
                "contains an image URL."
            )
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise _Invalid(f"Missing required parameter: '{where}.content[{j}].image_url.url'.")
        if not url.startswith(_IMAGE_URL_SCHEMES):
            raise _Invalid(f"Invalid '{where}.content[{j}].image_url.url'. Expected a valid URL.")
        images += 1
    return images


def _text(content) -> str:
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return "".join(text for text in texts if isinstance(text, str))
    return content if isinstance(content, str) else ""


OPENAI = OpenAIWire("openai", "openai")
COMPAT = OpenAIWire("compat", "compat")
