"""Google Gemini generateContent, through google-genai (``client.aio`` on the hub's guarded aiohttp
session, providers/transport.py)."""

from __future__ import annotations

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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

API_VERSION = "v1beta"
ROLES = {"user": "user", "assistant": "model"}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
# google-genai lets raw aiohttp, httpx2, json and pydantic errors through unwrapped.
CALL_ERRORS = (genai_errors.APIError, *errors.TRANSPORT_ERRORS, ValueError)


class GoogleAdapter(Adapter):
    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        key = errors.require_api_key(provider)
        # The SDK's own aiohttp session had limit=0 and a 4 MiB read buffer: kept, plus the guard.
        self._session = transport.session_create(limit=0, read_bufsize=2**22)
        self._client = genai.Client(api_key=key, http_options=http_options(provider, self._session))
        self._generate = self._client.aio.models.generate_content
        self._generate_stream = self._client.aio.models.generate_content_stream

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        try:
            response = await self._generate(**generate_params(model, request))
        except CALL_ERRORS as exc:
            raise errors.from_google(exc, secret=self.provider.api_key) from exc
        return generate_result(response, model)

    def stream(self, model: ModelSpec, request: ChatRequest):
        return sdk_stream(
            lambda: self._generate_stream(**generate_params(model, request)),
            response_apply,
            model_id=model.model_id,
            expected=CALL_ERRORS,
            convert=lambda exc: errors.from_google(exc, secret=self.provider.api_key),
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [listed_model(m) async for m in await self._client.aio.models.list()]
        except CALL_ERRORS as exc:
            raise errors.from_google(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        await self._session.close()  # a session given to the SDK is the giver's to close


def http_options(provider: ProviderSpec, session) -> types.HttpOptions:
    # attempts=1 also stops the aio client's own hidden retry of a refused connection,
    # which sleeps 1-10 s first. Timeout is in milliseconds.
    return types.HttpOptions(
        base_url=provider.base_url or None,
        api_version=API_VERSION,
        timeout=max(1, round(provider.timeout * 1000)),
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args={"allow_redirects": False},
        aiohttp_client=session,
    )


def generate_params(model: ModelSpec, request: ChatRequest) -> dict:
    # A dict, not GenerateContentConfig: the SDK deep-copies a config object it is given.
    config = {"max_output_tokens": max_tokens_for(model, request), "automatic_function_calling": {"disable": True}}
    if request.system:
        config["system_instruction"] = request.system
    temperature = temperature_for(model, request)
    if temperature is not None:
        config["temperature"] = temperature
    contents = [{"role": ROLES.get(m.role, m.role), "parts": [{"text": m.content}]} for m in request.messages]
    return {"model": model.model_id, "contents": contents, "config": config}


def generate_result(response, model: ModelSpec) -> ChatResult:
    try:
        candidate, usage = response.candidates[0], response.usage_metadata
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
        return ChatResult(
            text=candidate_text(candidate),
            model=response.model_version or model.model_id,
            input_tokens=usage.prompt_token_count or 0,
            output_tokens=(usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0),
            finish_reason=FINISH_REASONS.get(reason, reason and reason.lower()),
        )
    except (AttributeError, IndexError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def response_apply(response, end: StreamEvent) -> str | None:
    """One streamed response: its text is returned; model, usage (cumulative in Gemini's
    chunks) and finish reason go on ``end``."""
    usage = response.usage_metadata
    if usage is not None and usage.prompt_token_count is not None:
        end.input_tokens = usage.prompt_token_count
        end.output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    end.model = response.model_version or end.model
    if not response.candidates:
        return None
    candidate = response.candidates[0]
    reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
    if reason:
        end.finish_reason = FINISH_REASONS.get(reason, reason.lower())
    return candidate_text(candidate)


def listed_model(model) -> ListedModel:
    return ListedModel(
        model.name.removeprefix("models/"), model.display_name or "", model.input_token_limit, model.output_token_limit
    )


def candidate_text(candidate) -> str:
    parts = candidate.content.parts if candidate.content else None  # none when blocked
    return "".join(p.text for p in parts or () if p.text and not p.thought)
