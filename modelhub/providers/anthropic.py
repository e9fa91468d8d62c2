"""Anthropic Messages, through the official SDK on its aiohttp transport (over the hub's guarded
session, providers/transport.py)."""

from __future__ import annotations

import anthropic
from anthropic._vendor.httpx_aiohttp import AiohttpTransport

from . import errors, transport
from .base import (
    Adapter,
    ChatRequest,
    ChatResult,
    ListedModel,
    ModelSpec,
    ProviderSpec,
    StreamEvent,
    max_tokens_for,
    temperature_for,
)
from .sdk_stream import sdk_stream

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}


class AnthropicAdapter(Adapter):
    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        self._client = anthropic.AsyncAnthropic(
            api_key=errors.require_api_key(provider),
            base_url=provider.base_url or None,
            timeout=provider.timeout,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(
                follow_redirects=False,
                transport=transport.sdk_transport(AiohttpTransport, limits=anthropic.DEFAULT_CONNECTION_LIMITS),
            ),
        )
        self._create = self._client.messages.create

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        try:
            message = await self._create(**message_params(model, request))
        except (anthropic.AnthropicError, ValueError) as exc:
            raise errors.from_anthropic(exc, secret=self.provider.api_key) from exc
        return message_result(message, model)

    def stream(self, model: ModelSpec, request: ChatRequest):
        # Raw events rather than messages.stream(): no snapshot is accumulated per event.
        return sdk_stream(
            lambda: self._create(**message_params(model, request), stream=True),
            event_apply,
            model_id=model.model_id,
            expected=(anthropic.AnthropicError, ValueError, *errors.TRANSPORT_ERRORS),
            convert=lambda exc: errors.from_anthropic(exc, secret=self.provider.api_key),
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [ListedModel(m.id, m.display_name or "") async for m in self._client.models.list()]
        except (anthropic.AnthropicError, ValueError) as exc:
            raise errors.from_anthropic(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.close()


def message_params(model: ModelSpec, request: ChatRequest) -> dict:
    params = {
        "model": model.model_id,
        "max_tokens": max_tokens_for(model, request),
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        params["system"] = request.system
    temperature = temperature_for(model, request)
    if temperature is not None:  # the 2.x SDK dropped the temperature argument
        params["extra_body"] = {"temperature": temperature}
    return params


def message_result(message, model: ModelSpec) -> ChatResult:
    try:
        text = "".join(block.text for block in message.content if block.type == "text")
        return ChatResult(
            text=text,
            model=message.model or model.model_id,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            finish_reason=FINISH_REASONS.get(message.stop_reason, message.stop_reason),
        )
    except (AttributeError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def event_apply(event, end: StreamEvent) -> str | None:
    """One stream event: a text delta is returned; model, usage and stop reason go on ``end``."""
    kind = event.type
    if kind == "content_block_delta":
        return event.delta.text if event.delta.type == "text_delta" else None
    if kind == "message_start":
        end.model = event.message.model or end.model
        end.input_tokens = event.message.usage.input_tokens
        end.output_tokens = event.message.usage.output_tokens
    elif kind == "message_delta":
        end.output_tokens = event.usage.output_tokens
        reason = event.delta.stop_reason
        end.finish_reason = FINISH_REASONS.get(reason, reason)
    return None
