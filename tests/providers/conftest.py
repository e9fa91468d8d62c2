import socket
from decimal import Decimal

import pytest

from modelhub.providers.base import ChatRequest, Message, ModelSpec, ProviderSpec
from modelhub.runtime import runtime

KINDS = ("anthropic", "openai", "google", "openai_compatible")
MODEL_IDS = {
    "anthropic": "claude-haiku-4-5-20250514",
    "openai": "gpt-4o-mini",
    "google": "gemini-2.5-flash",
    "openai_compatible": "llama-3.1-8b-instant",
}
KEY = "sk-test-0123456789abcdef"


def provider_spec(kind, base_url=None, **fields) -> ProviderSpec:
    values = {
        "name": f"sim-{kind}",
        "kind": kind,
        "base_url": base_url,
        "api_key_env": f"{kind.upper()}_API_KEY",
        "api_key": KEY,
        "timeout": 5.0,
    }
    return ProviderSpec(**{**values, **fields})


def model_spec(provider: ProviderSpec, **fields) -> ModelSpec:
    values = {
        "pk": 1,
        "model_id": MODEL_IDS[provider.kind],
        "display_name": "Sim",
        "provider": provider,
        "context_window": 128_000,
        "max_output_tokens": 8_192,
        "input_price_per_mtok": Decimal("1"),
        "output_price_per_mtok": Decimal("2"),
    }
    if provider.kind == "google":
        values["max_tokens_param"] = "maxOutputTokens"
    return ModelSpec(**{**values, **fields})


def chat_request(*texts: str, **fields) -> ChatRequest:
    roles = ("user", "assistant")
    messages = tuple(Message(roles[i % 2], text) for i, text in enumerate(texts or ("Hello there",)))
    return ChatRequest(messages=messages, **fields)


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
async def connect(simulator):
    """connect(kind, **provider fields) -> (adapter, model spec) against the simulator."""

    def make(kind, model_fields=None, **provider_fields):
        provider = provider_spec(kind, **{"base_url": simulator.base_url(kind), **provider_fields})
        return runtime().adapters.get(provider), model_spec(provider, **(model_fields or {}))

    yield make
    await runtime().adapters.close()
