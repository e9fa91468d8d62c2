"""Conversations: the turns of a ``conversation_id``, kept per API key (a key sees only its
own), prepended to a request that brings only its new message and trimmed from the oldest
to fit the answering model's context window.

    memory_open           before the call: the conversation's latest turns, read newest
                          first until they would fill the largest window the hub has (one
                          query as a rule); nothing at all without a conversation_id
    history_fit           per model tried (``ChatCall.request_for``): the latest turns that
                          fit that model's window beside the request itself
    Memory.answered /     after the answer, plain or streamed (however the stream ended:
    Memory.streamed       what was answered): the new messages and the answer, with its
                          model, tokens and cost, in one transaction
    conversations_expire  retention: what the ledger keeps, the conversations keep

A request that brings its own earlier turns (an assistant message among its messages: a
client that keeps the context itself, or the tool results of the last answer's calls) gets
no history prepended; only its messages after the last answer are recorded, so the stored
conversation stays one copy of each turn. Images are not stored: a marker stands in their
place. The playground's conversations belong to its per-user key like any other key's."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F

from .dbwork import fresh_connections
from .models import Conversation, ConversationMessage
from .providers.base import ChatRequest, Message, ModelSpec, ToolCall, max_tokens_for
from .routing.capabilities import IMAGE_TOKENS

if TYPE_CHECKING:
    from .chat import ChatAnswer, ChatCall, ChatStream
    from .routing.snapshot import Snapshot

log = logging.getLogger("modelhub.conversations")

CHARS_PER_TOKEN = 4  # no tokenizer here: a generous estimate, as for the budget's worst case
MESSAGE_FRAMING_TOKENS = 4  # a message's role and separators
HISTORY_PAGE = 200  # messages read at a time, newest first


# --- how much room a turn takes ---------------------------------------------------------


def text_tokens(text: str) -> int:
    """An upper estimate of a text's tokens: ~4 ASCII characters a token, and a token for
    every other character (Chinese or Japanese text takes about one a character; counted
    at four a token it would overflow the window it was fitted to)."""
    if text.isascii():
        return -(-len(text) // CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // CHARS_PER_TOKEN) + len(text) - ascii_chars


def message_tokens(message: Message) -> int:
    """An upper estimate of a message's tokens: its text, its tool calls, its images, its framing."""
    tokens = text_tokens(message.content) + len(message.images) * IMAGE_TOKENS + MESSAGE_FRAMING_TOKENS
    for call in message.tool_calls:
        tokens += text_tokens(call.name) + text_tokens(call.arguments)
    return tokens


def request_tokens(request: ChatRequest, model: ModelSpec) -> int:
    """What the request takes of ``model``'s window without any history: its messages, its
    system prompt, its tool definitions and the output it allows the model."""
    tokens = sum(message_tokens(m) for m in request.messages) + text_tokens(request.system or "")
    for tool in request.tools:
        tokens += text_tokens(tool.name) + text_tokens(tool.description)
        tokens += text_tokens(orjson.dumps(tool.parameters).decode())
    return tokens + max_tokens_for(model, request)


def history_fit(history: tuple[Message, ...], request: ChatRequest, model: ModelSpec) -> ChatRequest:
    """``request`` with as many of the latest turns of ``history`` as fit ``model``'s context
    window beside the request's own messages, its system prompt, its tools and its output
    allowance. The oldest go first; a kept history never starts with an answer or a tool
    result (a turn without the question that led to it is no help)."""
    if not history:
        return request
    room = model.context_window - request_tokens(request, model)
    start = len(history)
    while start > 0:
        needed = message_tokens(history[start - 1])
        if needed > room:
            break
        room -= needed
        start -= 1
    while start < len(history) and history[start].role != "user":
        start += 1
    if start == len(history):
        return request
    return replace(request, messages=history[start:] + request.messages)


# --- messages as stored -------------------------------------------------------------------


def message_row(message: Message) -> tuple[str, str, object]:
    """(role, content, tool_calls) as a ConversationMessage stores them. An assistant's
    ``tool_calls`` are its calls in OpenAI's shape; a tool result's are the call it answers
    (``{"tool_call_id", "name"}``)."""
    content = message.content
    if message.images:
        content = f"[{len(message.images)} image(s) not kept] {content}".rstrip()
    if message.role == "tool":
        return "tool", content, {"tool_call_id": message.tool_call_id, "name": message.name}
    return message.role, content, tool_calls_stored(message.tool_calls) or None


def tool_calls_stored(calls: tuple[ToolCall, ...]) -> list[dict]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def message_of(role: str, content: str, tool_calls) -> Message:
    """A stored message back as the chat service takes it."""
    if role == "tool":
        answers = tool_calls or {}
        return Message("tool", content, tool_call_id=answers.get("tool_call_id"), name=answers.get("name"))
    calls = tuple(ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in tool_calls or ())
    return Message(role, content, tool_calls=calls)


def history_mended(messages: list[Message]) -> tuple[Message, ...]:
    """The stored turns as a provider takes them: tool calls that no stored result answers
    (the client asked something else instead) are dropped, and so are results whose call is
    not kept (trimmed away) and answers left with nothing in them (a stream whose client
    left before its first word was relayed)."""
    mended: list[Message] = []
    answerable: set[str] = set()
    for i, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id in answerable:
                mended.append(message)
            continue
        answerable = set()
        if message.tool_calls:
            answered = _results_after(messages, i)
            calls = tuple(c for c in message.tool_calls if c.id in answered)
            answerable = {c.id for c in calls}
            message = replace(message, tool_calls=calls)
        if message.role == "assistant" and not message.content and not message.tool_calls:
            continue
        mended.append(message)
    return tuple(mended)


def _results_after(messages: list[Message], index: int) -> set[str | None]:
    """The call ids that the tool results right after ``messages[index]`` answer."""
    answered: set[str | None] = set()
    for message in messages[index + 1 :]:
        if message.role != "tool":
            break
        answered.add(message.tool_call_id)
    return answered


# --- reads ----------------------------------------------------------------------------------


def history_read(*, key_pk: int, conversation_id: str, room: int) -> tuple[Message, ...]:
    """The conversation's latest messages, oldest first, as many as ``room`` tokens hold
    (the largest window any model could give them); none for an unknown conversation or
    another key's."""
    rows = (
        ConversationMessage.objects.filter(
            conversation__api_key_id=key_pk, conversation__conversation_id=conversation_id
        )
        .order_by("-id")
        .values_list("role", "content", "tool_calls")
    )
    kept: list[Message] = []
    offset = 0
    while room > 0:
        page = list(rows[offset : offset + HISTORY_PAGE])
        for row in page:
            message = message_of(*row)
            room -= message_tokens(message)
            if room < 0:
                break
            kept.append(message)
        if len(page) < HISTORY_PAGE:
            break
        offset += HISTORY_PAGE
    kept.reverse()
    return history_mended(kept)


def conversation_get(*, key_pk: int, conversation_id: str) -> tuple[Conversation, list[ConversationMessage]] | None:
    """The key's conversation and its messages, oldest first; None for an unknown id or another key's."""
    conversation = Conversation.objects.filter(api_key_id=key_pk, conversation_id=conversation_id).first()
    if conversation is None:
        return None
    return conversation, list(conversation.messages.order_by("id"))


def largest_window(snapshot: Snapshot) -> int:
    """The most history any model of the hub could take."""
    return max((model.context_window for model in snapshot.models.values()), default=0)


# --- one turn -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Said:
    """What the answering model said, and what it cost."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    model: ModelSpec
    tokens: tuple[int, int]
    cost: Decimal


@dataclass(slots=True)
class Memory:
    """One turn of a conversation: the history it is given, the new messages it records
    with its answer, and (for a stream) the text answered so far, so that an answer cut
    short or left by its client is recorded as far as it went."""

    key_pk: int
    conversation_id: str
    route: str
    request_id: str
    asked: tuple[Message, ...]
    history: tuple[Message, ...] = ()
    heard: list[str] = field(default_factory=list)
    recorded: bool = False

    def call_with(self, call: ChatCall) -> ChatCall:
        """The call with this conversation's history (the chat service fits it to each model)."""
        return replace(call, history=self.history) if self.history else call

    async def answered(self, answer: ChatAnswer) -> None:
        result = answer.result
        tokens = (result.input_tokens, result.output_tokens)
        await self._record_async(Said(result.text, result.tool_calls, answer.model, tokens, answer.cost))

    async def streamed(self, chat: ChatStream) -> None:
        """Record a stream once it has ended (read to its end, cut, or closed)."""
        await self._record_async(self._said_streamed(chat))

    def streamed_sync(self, chat: ChatStream) -> None:
        """``streamed`` from a worker thread (a response closed after its client left)."""
        if not self.recorded:
            self.recorded = True
            self._record(self._said_streamed(chat))

    def _said_streamed(self, chat: ChatStream) -> Said:
        stream = chat.stream
        return Said("".join(self.heard), stream.tool_calls, stream.model, stream.tokens, stream.cost)

    async def _record_async(self, said: Said) -> None:
        if self.recorded:
            return
        self.recorded = True
        # shielded: a client that leaves now must not cancel the write before it starts
        await asyncio.shield(sync_to_async(fresh_connections(self._record))(said))

    def _record(self, said: Said) -> None:
        """Best effort: the answer has been given; a database failure loses the turn from
        the conversation (logged), never the answer (the ledger spools its own rows)."""
        try:
            turn_record(
                key_pk=self.key_pk,
                conversation_id=self.conversation_id,
                route=self.route,
                request_id=self.request_id,
                asked=self.asked,
                said=said,
            )
        except DatabaseError as exc:
            log.warning("conversation %r: turn of request %s not kept: %s", self.conversation_id, self.request_id, exc)


def turn_split(messages: tuple[Message, ...]) -> tuple[bool, tuple[Message, ...]]:
    """(whether the request brings its own earlier turns, its messages after the last answer)."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return last >= 0, messages[last + 1 :]


async def memory_open(call: ChatCall) -> Memory | None:
    """The conversation's memory for this call (None without a conversation_id: no
    database work). Raises DatabaseError when the history cannot be read."""
    if call.conversation_id is None:
        return None
    own_history, asked = turn_split(call.request.messages)
    memory = Memory(call.key.pk, call.conversation_id, call.route, call.request_id, asked)
    if not own_history:
        memory.history = await sync_to_async(fresh_connections(history_read))(
            key_pk=call.key.pk, conversation_id=call.conversation_id, room=largest_window(call.snapshot)
        )
    return memory


# --- writes -----------------------------------------------------------------------------


def turn_record(
    *, key_pk: int, conversation_id: str, route: str, request_id: str, asked: tuple[Message, ...], said: Said
) -> None:
    """Append a turn (the new messages and the answer) to the key's conversation, made on
    its first turn, and add the answer's tokens and cost to the conversation's totals."""
    now = datetime.now(UTC)
    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(
            api_key_id=key_pk, conversation_id=conversation_id, defaults={"route": route}
        )
        rows = [ConversationMessage(conversation=conversation, request_id=request_id, **_fields(m)) for m in asked]
        rows.append(
            ConversationMessage(
                conversation=conversation,
                role="assistant",
                content=said.text,
                tool_calls=tool_calls_stored(said.tool_calls) or None,
                model=said.model.model_id,
                provider=said.model.provider.name,
                input_tokens=said.tokens[0],
                output_tokens=said.tokens[1],
                cost_usd=said.cost,
                request_id=request_id,
            )
        )
        ConversationMessage.objects.bulk_create(rows)
        Conversation.objects.filter(pk=conversation.pk).update(
            route=route,
            turns=F("turns") + 1,
            input_tokens=F("input_tokens") + said.tokens[0],
            output_tokens=F("output_tokens") + said.tokens[1],
            cost_usd=F("cost_usd") + said.cost,
            updated_at=now,
        )


def _fields(message: Message) -> dict:
    role, content, tool_calls = message_row(message)
    return {"role": role, "content": content, "tool_calls": tool_calls}


def conversations_expire(*, now: datetime | None = None) -> int:
    """Retention, as the ledger's (MODELHUB_USAGE_RETENTION_DAYS): delete the messages
    older than it, and the conversations with nothing newer. Returns the conversations
    deleted (a conversation still in use keeps its totals and its recent turns)."""
    now = now or datetime.now(UTC)
    horizon = now - timedelta(days=settings.MODELHUB["USAGE_RETENTION_DAYS"])
    with transaction.atomic():
        _, by_model = Conversation.objects.filter(updated_at__lt=horizon).delete()
        ConversationMessage.objects.filter(created_at__lt=horizon).delete()
    gone = by_model.get(Conversation._meta.label, 0)
    if gone:
        log.info("expired %d conversations older than %s", gone, horizon.date())
    return gone
