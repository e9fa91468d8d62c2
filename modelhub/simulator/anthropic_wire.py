"""Anthropic Messages wire format.

Tools, tool_use/tool_result blocks and image blocks are parsed and checked as strictly as the
real API checks them (a translation error is a 400 here as there); a tool call is answered
as a tool_use block, plain and streamed."""

from __future__ import annotations

import re

from .asgi import bearer, dumps, header, next_id, sse_event
from .reply import Reply, Request, count_words, display_name, int_or_none

CONTEXT_WINDOW = 200_000
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_CHOICES = ("auto", "any", "tool", "none")
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
IMAGE_SOURCES = ("base64", "url")
BLOCK_TYPES = {"user": ("text", "image", "tool_result"), "assistant": ("text", "tool_use")}
_ERRORS = {  # status -> (type, message)
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}}


class AnthropicWire:
    name = "anthropic"
    stream_error_event = sse_event(b"error", _error("overloaded_error", "Overloaded"))
    garbage_event = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta\n\n'

    def api_key(self, scope) -> str | None:
        return header(scope, b"x-api-key") or bearer(scope)

    def error(self, status: int, message: str | None = None) -> bytes:
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        type_, text = _ERRORS.get(status, (default_type, f"Simulated error {status}."))
        return dumps(_error(type_, message or text))

    def context_error(self, input_tokens: int) -> bytes:
        message = f"prompt is too long: {CONTEXT_WINDOW + input_tokens} tokens > {CONTEXT_WINDOW} maximum"
        return dumps(_error("invalid_request_error", message))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request("", problem="There was an error parsing the body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return Request("", problem="model: Field required")
        stream, limit = bool(body.get("stream")), int_or_none(body.get("max_tokens"))
        if not isinstance(messages, list) or not messages:
            return Request(model, stream, problem="messages: Field required")
        if limit is None:
            return Request(model, stream, problem="max_tokens: Field required")
        words = count_words(body.get("system"))
        rich = "tools" in body or "tool_choice" in body  # or a message of blocks: checked below
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if type(content) is str:
                    words += len(content.split())
                else:
                    words += count_words(content)
                    rich = True
        request = Request(model, stream, max(words, 1), limit)
        if rich:
            request.problem = _parse_tools(body.get("tools"), request) or _parse_messages(messages, request)
            request.problem = request.problem or _parse_choice(body.get("tool_choice"), request)
        return request

    def completion(self, reply: Reply) -> bytes:
        return dumps(
            {
                **_message(reply, _content(reply)),
                "stop_reason": _stop_reason(reply),
                "usage": _usage(reply.input_tokens, reply.output_tokens),
            }
        )

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail) of a streamed answer."""
        start = {**_message(reply, []), "stop_reason": None, "usage": _usage(reply.input_tokens, 1)}
        message_start = sse_event(b"message_start", {"type": "message_start", "message": start})
        tail = [
            sse_event(
                b"message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            ),
            sse_event(b"message_stop", {"type": "message_stop"}),
        ]
        if reply.tool_call:
            events = _tool_events(reply.tool_call[0], reply.arguments_pieces, body)
            return [message_start, sse_event(b"ping", {"type": "ping"})], events, tail
        prelude = [
            message_start,
            sse_event(
                b"content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            sse_event(b"ping", {"type": "ping"}),
        ]
        content = [_text_delta(0, c) for c in reply.chunks]
        return prelude, content, [_block_stop(0), *tail]

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "data": [
                    {"type": "model", "id": i, "display_name": display_name(i), "created_at": _created_at(i)}
                    for i in ids
                ],
                "has_more": False,
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
        )


def _message(reply: Reply, content: list) -> dict:
    return {
        "id": next_id("msg_sim"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_sequence": None,
    }


def _content(reply: Reply) -> list[dict]:
    if reply.tool_call:
        name, arguments = reply.tool_call
        return [{"type": "tool_use", "id": next_id("toolu_sim"), "name": name, "input": arguments}]
    return [{"type": "text", "text": reply.text}]


def _tool_events(name: str, arguments_pieces: tuple[str, ...], body: dict) -> list[bytes]:
    """A streamed call as the API streams it: the tool_use block opens with an empty input,
    which input_json_delta fragments then fill (the first one empty, as the API's is). A call
    the model was not forced to make comes after a short text block, as Claude's usually do:
    the call's block index is then not the call's index in the answer."""
    events, index = [], 0
    choice = body.get("tool_choice")
    if not (isinstance(choice, dict) and choice.get("type") in ("any", "tool")):
        events += [_block_start(0, {"type": "text", "text": ""}), _text_delta(0, f"I'll use {name}."), _block_stop(0)]
        index = 1
    events.append(_block_start(index, {"type": "tool_use", "id": next_id("toolu_sim"), "name": name, "input": {}}))
    for piece in ("", *arguments_pieces):
        delta = {"type": "input_json_delta", "partial_json": piece}
        events.append(
            sse_event(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
    events.append(_block_stop(index))
    return events


def _block_start(index: int, block: dict) -> bytes:
    return sse_event(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _text_delta(index: int, text: str) -> bytes:
    return sse_event(
        b"content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
    )


def _block_stop(index: int) -> bytes:
    return sse_event(b"content_block_stop", {"type": "content_block_stop", "index": index})


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _stop_reason(reply: Reply) -> str:
    if reply.tool_call:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def _created_at(model_id: str) -> str:
    date = re.search(r"(\d{4})(\d{2})(\d{2})$", model_id)
    return f"{date[1]}-{date[2]}-{date[3]}T00:00:00Z" if date else "2025-01-01T00:00:00Z"


# -- requests with tools, images or tool results --


def _parse_tools(tools, request: Request) -> str | None:
    """Fills ``request.tools``; the API's 400 message for a tool it would refuse."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    parsed = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{i}: Input should be a valid dictionary"
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if schema is None:
            return f"tools.{i}.custom.input_schema: Field required"
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
        parsed.append((name, schema))
    if len({name for name, _ in parsed}) < len(parsed):
        return "tools: Tool names must be unique."
    request.tools = tuple(parsed)
    return None


def _parse_choice(choice, request: Request) -> str | None:
    """Fills ``tool_forced`` / ``tools_off`` (after the tools are parsed)."""
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in TOOL_CHOICES:
        return _bad_tag("tool_choice", kind, TOOL_CHOICES)
    if kind == "none":
        if "disable_parallel_tool_use" in choice:
            return "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
        request.tools_off = True
    elif kind == "tool":
        name = choice.get("name")
        if name not in {tool for tool, _ in request.tools}:
            return f"tool_choice.tool.name: Tool '{name}' not found in tools"
        request.tool_forced = name
    return None


def _parse_messages(messages: list, request: Request) -> str | None:
    """Counts the images and finds the closing tool result; the API's 400 message for a
    block it would refuse, or a tool_use and tool_result that do not pair up: every
    tool_use of an assistant turn needs its tool_result at the start of the next message,
    and every tool_result a tool_use in the previous one."""
    pending: dict[str, int] = {}  # the previous assistant turn's tool_use ids -> its index
    results: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in BLOCK_TYPES:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if isinstance(content, str):
            blocks: list = []
        elif isinstance(content, list):
            blocks = content
        else:
            return f"messages.{i}.content: Field required"
        uses, results = [], []
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            problem = _check_block(block, role, where)
            if problem:
                return problem
            if block["type"] == "image":
                request.images += 1
            elif block["type"] == "tool_use":
                uses.append(block["id"])
            elif block["type"] == "tool_result":
                if block["tool_use_id"] not in pending:
                    return (
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                if len(results) == j:  # only a leading run of results answers the calls
                    results.append(block["tool_use_id"])
        missing = [use for use in pending if use not in results]
        if missing:
            return (
                f"messages.{pending[missing[0]]}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        pending = dict.fromkeys(uses, i)
    if results:
        request.tool_result = " ".join(_result_text(block) for block in messages[-1]["content"][: len(results)])
    return None


def _check_block(block, role: str, where: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in BLOCK_TYPES[role]:
        return _bad_tag(where, kind, BLOCK_TYPES[role])
    if kind == "text" and not (isinstance(block.get("text"), str) and block["text"]):
        return "messages: text content blocks must be non-empty"
    if kind == "image":
        return _check_image(block.get("source"), f"{where}.image.source")
    if kind == "tool_use":
        for field, type_ in (("id", str), ("name", str), ("input", dict)):
            if not isinstance(block.get(field), type_):
                return f"{where}.tool_use.{field}: Field required"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return f"{where}.tool_result.tool_use_id: Field required"
    return None


def _check_image(source, where: str) -> str | None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        if source.get("media_type") not in MEDIA_TYPES:
            return f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        if not isinstance(source.get("data"), str) or not source["data"]:
            return f"{where}.base64.data: Field required"
    elif kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            return f"{where}.url.url: Field required"
    else:
        return _bad_tag(where, kind, IMAGE_SOURCES)
    return None


def _bad_tag(where: str, kind, expected: tuple[str, ...]) -> str:
    tags = ", ".join(f"'{t}'" for t in expected)
    return f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {tags}"


def _result_text(block: dict) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text")
    return content if isinstance(content, str) else ""


ANTHROPIC = AnthropicWire()
