"""OpenAI Chat Completions, through the official SDK on its aiohttp transport (over the hub's
guarded session, providers/transport.py)."""

from __future__ import annotations

import openai
from openai._vendor.httpx_aiohttp import AiohttpTransport

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

STREAM_OPTIONS = {"include_usage": True}
TOKEN_PARAMS = frozenset({"max_tokens", "max_completion_tokens"})

# One vocabulary for every adapter: OpenAI's.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class OpenAIAdapter(Adapter):
    KEY_REQUIRED = True

    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        self._client = self.client_for(provider)

    def client_for(self, provider: ProviderSpec) -> openai.AsyncOpenAI:
        key = errors.require_api_key(provider) if self.KEY_REQUIRED else provider.api_key
        return openai.AsyncOpenAI(
            api_key=key or "unused",
            base_url=provider.base_url or None,
            timeout=provider.timeout,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(
                follow_redirects=False,
                transport=transport.sdk_transport(AiohttpTransport, limits=openai.DEFAULT_CONNECTION_LIMITS),
            ),
        )

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        try:
            completion = await self._post(chat_params(model, request))
        except (openai.OpenAIError, ValueError) as exc:
            raise errors.from_openai(exc, secret=self.provider.api_key) from exc
        return chat_result(completion, model)

    def stream(self, model: ModelSpec, request: ChatRequest):
        params = {**chat_params(model, request), "stream": True, "stream_options": STREAM_OPTIONS}
        return sdk_stream(
            lambda: self._post(params, stream=True),
            chunk_apply,
            model_id=model.model_id,
            expected=(openai.OpenAIError, ValueError),
            convert=lambda exc: errors.from_openai(exc, secret=self.provider.api_key),
        )

    def _post(self, params: dict, *, stream: bool = False):
        """The SDK's own request (auth, base URL, timeout, status errors, SSE framing, a
        mid-stream error event raised), answered as plain JSON: ``cast_to=object`` is the
        SDK's documented way to skip building its typed objects, and the params, built
        here from a checked request, skip its per-call type-driven transformation."""
        return self._client.post(
            "/chat/completions",
            cast_to=object,
            body=params,
            stream=stream,
            stream_cls=openai.AsyncStream[object] if stream else None,
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [ListedModel(m.id) async for m in self._client.models.list()]
        except (openai.OpenAIError, ValueError) as exc:
            raise errors.from_openai(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.close()


def chat_params(model: ModelSpec, request: ChatRequest) -> dict:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    param = model.max_tokens_param if model.max_tokens_param in TOKEN_PARAMS else "max_tokens"
    params = {"model": model.model_id, "messages": messages, param: max_tokens_for(model, request)}
    temperature = temperature_for(model, request)
    if temperature is not None:
        params["temperature"] = temperature
    return params


def chat_result(completion: dict, model: ModelSpec) -> ChatResult:
    try:
        choice, usage = completion["choices"][0], completion["usage"]
        return ChatResult(
            text=choice["message"].get("content") or "",
            model=completion.get("model") or model.model_id,
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            finish_reason=_finish(choice.get("finish_reason")),
        )
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def _finish(reason: str | None) -> str | None:
    return FINISH_REASONS.get(reason, reason) if reason else None


def chunk_apply(chunk: dict, end: StreamEvent) -> str | None:
    """One stream chunk: its text delta is returned, its model, usage and finish reason
    are kept on ``end``."""
    usage = chunk.get("usage")
    if usage:
        end.input_tokens, end.output_tokens = usage["prompt_tokens"], usage["completion_tokens"]
    if chunk.get("model"):
        end.model = chunk["model"]
    choices = chunk.get("choices")
    if not choices:
        return None
    choice = choices[0]
    if choice.get("finish_reason"):
        end.finish_reason = _finish(choice["finish_reason"])
    return (choice.get("delta") or {}).get("content")
