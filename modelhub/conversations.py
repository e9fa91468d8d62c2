"""Conversations: the earlier turns of a ``conversation_id``, prepended to a request that
brings only its new message, trimmed from the oldest to fit the answering model's context
window."""

from __future__ import annotations

from dataclasses import replace

from .providers.base import ChatRequest, Message, ModelSpec, max_tokens_for

CHARS_PER_TOKEN = 4  # no tokenizer here: a generous estimate, as for the budget's worst case


def message_tokens(message: Message) -> int:
    """An upper estimate of a message's tokens (~4 characters a token, plus its framing)."""
    chars = len(message.content) + sum(len(c.arguments) + len(c.name) for c in message.tool_calls)
    return -(-chars // CHARS_PER_TOKEN) + 4


def history_fit(history: tuple[Message, ...], request: ChatRequest, model: ModelSpec) -> ChatRequest:
    """``request`` with as many of the latest turns of ``history`` as fit ``model``'s context
    window beside the request's own messages, its system prompt and its output allowance.
    The oldest go first; a kept history never starts with an answer or a tool result."""
    if not history:
        return request
    room = model.context_window - max_tokens_for(model, request)
    room -= sum(message_tokens(m) for m in request.messages) + -(-len(request.system or "") // CHARS_PER_TOKEN)
    start = len(history)
    while start > 0 and room - message_tokens(history[start - 1]) >= 0:
        start -= 1
        room -= message_tokens(history[start])
    while start < len(history) and history[start].role != "user":
        start += 1  # a turn without the question that led to it is no help
    if start == len(history):
        return request
    return replace(request, messages=history[start:] + request.messages)
