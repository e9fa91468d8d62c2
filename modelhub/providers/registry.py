"""Provider kind to adapter class, and the pool of live adapters: one per provider settings
per event loop, built on first use and reused. The pool lives in the runtime."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable

from django.utils.module_loading import import_string

from .base import Adapter, ErrorKind, ProviderError, ProviderSpec

ADAPTERS = {
    "anthropic": "modelhub.providers.anthropic.AnthropicAdapter",
    "openai": "modelhub.providers.openai.OpenAIAdapter",
    "google": "modelhub.providers.google.GoogleAdapter",
    "openai_compatible": "modelhub.providers.openai_compatible.OpenAICompatibleAdapter",
}

# A replaced adapter may still be serving calls: close it once they have had time to end.
CLOSE_GRACE_SECONDS = 5.0


class _LoopAdapters:
    __slots__ = ("by_spec", "by_name", "retiring")

    def __init__(self):
        self.by_spec: dict[ProviderSpec, Adapter] = {}
        self.by_name: dict[str, ProviderSpec] = {}
        self.retiring: dict[Adapter, asyncio.Task] = {}


class AdapterPool:
    """The live adapters of this process, per event loop (an aiohttp session is bound to
    its loop). Loops in other threads (async_to_sync, Celery) share the pool."""

    def __init__(self):
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopAdapters] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, provider: ProviderSpec) -> Adapter:
        """The adapter for these provider settings on the running loop."""
        try:
            return self._loops[asyncio.get_running_loop()].by_spec[provider]
        except KeyError:
            return self._create(provider)

    async def close(self) -> None:
        """Close every adapter of the running loop, replaced ones included (shutdown, tests)."""
        with self._lock:
            live = self._loops.pop(asyncio.get_running_loop(), None)
        if live is None:
            return
        for task in live.retiring.values():
            task.cancel()
        adapters = [*live.by_spec.values(), *live.retiring]
        await asyncio.gather(*(adapter.aclose() for adapter in adapters), return_exceptions=True)

    def _create(self, provider: ProviderSpec) -> Adapter:
        loop = asyncio.get_running_loop()
        adapter = adapter_class(provider.kind)(provider)
        with self._lock:
            self._forget_closed_loops()
            live = self._loops.setdefault(loop, _LoopAdapters())
        live.by_spec[provider] = adapter
        replaced = live.by_name.get(provider.name)
        live.by_name[provider.name] = provider
        if replaced is not None and replaced != provider and replaced in live.by_spec:
            _retire(live, live.by_spec.pop(replaced))
        return adapter

    def _forget_closed_loops(self) -> None:
        # The weak key alone never lets go: a loop's aiohttp sessions hold the loop. A loop
        # closed without close() (asyncio.run per Celery task) is dropped here.
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            del self._loops[loop]


def adapter_classes_preload(*, kinds: Iterable[str]) -> list[str]:
    """Import the adapters (and so the SDKs) of these provider kinds now."""
    loaded = sorted(kinds)
    for kind in loaded:
        adapter_class(kind)
    return loaded


def adapter_class(kind: str) -> type[Adapter]:
    path = ADAPTERS.get(kind)
    if path is None:
        raise ProviderError(ErrorKind.SERVER, f"unknown provider kind {kind!r}")
    return import_string(path)


def _retire(live: _LoopAdapters, adapter: Adapter) -> None:
    live.retiring[adapter] = asyncio.get_running_loop().create_task(_close_later(live, adapter))


async def _close_later(live: _LoopAdapters, adapter: Adapter) -> None:
    await asyncio.sleep(adapter.provider.timeout + CLOSE_GRACE_SECONDS)
    live.retiring.pop(adapter, None)
    await adapter.aclose()
