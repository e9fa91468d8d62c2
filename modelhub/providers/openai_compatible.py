"""Groq, Ollama, vLLM, OpenRouter and any other endpoint that speaks OpenAI's wire."""

from __future__ import annotations

from .base import ErrorKind, ProviderError, ProviderSpec
from .openai import OpenAIAdapter


class OpenAICompatibleAdapter(OpenAIAdapter):
    KEY_REQUIRED = False  # self-hosted servers (Ollama, vLLM) take no key

    def __init__(self, provider: ProviderSpec):
        if not provider.base_url:
            raise ProviderError(ErrorKind.CONNECTION, f"{provider.name}: no base_url configured")
        super().__init__(provider)
