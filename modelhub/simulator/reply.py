"""The deterministic answer every wire format renders: a request in, a reply out."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field


@dataclass(slots=True)
class Request:
    """What a wire format parsed out of a request body, in the simulator's own terms.

    ``tools``: the functions offered, as (name, JSON schema of the arguments), in order;
    ``tool_forced``: the function the caller forces (its name), ``tools_off``: tool_choice
    none; ``tool_result``: the text of the tool result that ends the conversation, if it
    ends with one; ``images``: how many images the request holds; ``json_schema``: JSON
    output asked for (``{}`` for any JSON object)."""

    model: str
    stream: bool = False
    input_tokens: int = 1
    max_tokens: int | None = None
    problem: str | None = None  # why the request is invalid (answered as a 400)
    tools: tuple[tuple[str, dict], ...] = ()
    tool_forced: str | None = None
    tools_off: bool = False
    tool_result: str | None = None
    images: int = 0
    json_schema: dict | None = None


@dataclass(slots=True)
class Reply:
    model: str
    chunks: tuple[str, ...]  # stream pieces; joined they give the text
    input_tokens: int
    output_tokens: int
    truncated: bool
    tool_call: tuple[str, dict] | None = field(default=None)  # (function name, arguments)

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.tool_call[1]) if self.tool_call else ""

    @property
    def arguments_pieces(self) -> tuple[str, ...]:
        """The arguments' JSON in three fragments, as a model streams them."""
        text = self.arguments_json
        third = max(1, len(text) // 3)
        return tuple(p for p in (text[:third], text[third : 2 * third], text[2 * third :]) if p)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def make_reply(request: Request, chunks: int | None = None) -> Reply:
    """The model's fixed sentence, or with ``chunks`` (a paced model) that many words
    counting ``1 2 3 ...``: one word a chunk, so a client can check count and order.

    A model offered tools calls the first (or the forced) one, with arguments built from
    its schema, unless the conversation ends with a tool result, which it acknowledges in
    text. Asked for JSON, it answers a JSON object with the schema's required keys. Given
    images, it says how many it received."""
    if request.tools and not request.tools_off and request.tool_result is None:
        name, schema = next((t for t in request.tools if t[0] == request.tool_forced), request.tools[0])
        arguments = example_of(schema)
        return Reply(request.model, (), request.input_tokens, _tokens(json.dumps(arguments)), False, (name, arguments))
    if request.tool_result is not None or request.json_schema is not None or request.images:
        text = _special_text(request)
        return Reply(request.model, _word_chunks(text), request.input_tokens, _tokens(text), False)
    pieces, words, truncated = _reply_chunks(request.model, request.max_tokens, chunks)
    return Reply(request.model, pieces, request.input_tokens, words, truncated)


def _special_text(request: Request) -> str:
    if request.json_schema is not None:
        value = (
            example_of(request.json_schema)
            if request.json_schema
            else {"reply": f"Simulated reply from {request.model}."}
        )
        return json.dumps(value)
    if request.tool_result is not None:
        return f"Simulated reply from {request.model}. The tool returned: {request.tool_result}"
    plural = "image" if request.images == 1 else "images"
    return f"Simulated reply from {request.model}. I received {request.images} {plural}."


def _word_chunks(text: str) -> tuple[str, ...]:
    words = text.split(" ")
    return tuple(word if i == 0 else " " + word for i, word in enumerate(words))


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def example_of(schema) -> object:
    """A value that the JSON schema accepts (its required properties only; the first of an
    enum or of anyOf/oneOf)."""
    if not isinstance(schema, dict):
        return "example"
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_of(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else kind  # Gemini's OpenAPI types are upper case
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        return {name: example_of(properties.get(name, {})) for name in names}
    if kind == "array":
        return [example_of(schema.get("items", {}))]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "example")


@functools.lru_cache(maxsize=4096)
def _reply_chunks(model: str, limit: int | None, count: int | None) -> tuple[tuple[str, ...], int, bool]:
    words = f"Simulated reply from {model}.".split() if count is None else [str(i) for i in range(1, count + 1)]
    truncated = limit is not None and limit < len(words)
    if truncated:
        words = words[: max(limit, 0)]
    chunks = tuple(word if i == 0 else " " + word for i, word in enumerate(words)) or ("",)
    return chunks, len(words), truncated


def count_words(content) -> int:
    """Words in a message content: a string, a text part/block, or a list of them."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(count_words(part) for part in content)
    if isinstance(content, dict):
        return count_words(content.get("text"))
    return 0


def int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def display_name(model_id: str) -> str:
    """'claude-3-5-haiku-20241022' -> 'Claude 3.5 Haiku'."""
    words: list[str] = []
    for token in re.sub(r"-\d{8}$", "", model_id).split("-"):
        if token.isdigit() and words and words[-1].replace(".", "").isdigit():
            words[-1] += "." + token
        else:
            words.append(token.capitalize() if token.isalpha() else token)
    return " ".join(words)
