"""Groq, Ollama, vLLM, OpenRouter and any other endpoint that speaks OpenAI's wire."""

from __future__ import annotations

from .base import ErrorKind, ProviderError, ProviderSpec
from .openai import OpenAIAdapter


class OpenAICompatibleAdapter(OpenAIAdapter):
    KEY_REQUIRED = False  # self-hosted servers (Ollama, vLLM) take no key
    # The sampling parameters every such host takes: several reject fields they do not
    # know (``user``, ``metadata``) with a 400.
    SUPPORTED_PARAMS = frozenset({"stop", "top_p", "seed", "presence_penalty", "frequency_penalty"})
    # Self-hosted servers have no way out to the internet, and hosted ones differ: only
    # inline (data: URL) images are sure to arrive.
    FETCHES_IMAGE_URLS = False

    def __init__(self, provider: ProviderSpec):
        if not provider.base_url:
            raise ProviderError(ErrorKind.CONNECTION, f"{provider.name}: no base_url configured")
        super().__init__(provider)
