"""The deterministic answer every wire format renders: a request in, a reply out."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@dataclass(slots=True)
class Request:
    model: str
    stream: bool = False
    input_tokens: int = 1
    max_tokens: int | None = None
    problem: str | None = None  # why the request is invalid (answered as a 400)


@dataclass(slots=True)
class Reply:
    model: str
    chunks: tuple[str, ...]  # stream pieces; joined they give the text
    input_tokens: int
    output_tokens: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def make_reply(request: Request, chunks: int | None = None) -> Reply:
    """The model's fixed sentence, or with ``chunks`` (a paced model) that many words
    counting ``1 2 3 ...``: one word a chunk, so a client can check count and order."""
    pieces, words, truncated = _reply_chunks(request.model, request.max_tokens, chunks)
    return Reply(request.model, pieces, request.input_tokens, words, truncated)


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
