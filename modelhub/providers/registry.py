"""Provider kind to adapter class, and the live adapters: one per provider settings per
event loop, built on first use and reused (each holds an aiohttp session, bound to its loop)."""
from __future__ import annotations

import asyncio
import threading
import weakref

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


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopAdapters] = weakref.WeakKeyDictionary()
_loops_lock = threading.Lock()  # loops in other threads (async_to_sync, Celery) share _loops


def adapter_for(provider: ProviderSpec) -> Adapter:
    """The adapter for these provider settings on the running loop."""
    try:
        return _loops[asyncio.get_running_loop()].by_spec[provider]
    except KeyError:
        return _adapter_create(provider)


async def adapters_close() -> None:
    """Close every adapter of the running loop, replaced ones included (shutdown, tests)."""
    with _loops_lock:
        live = _loops.pop(asyncio.get_running_loop(), None)
    if live is None:
        return
    for task in live.retiring.values():
        task.cancel()
    adapters = [*live.by_spec.values(), *live.retiring]
    await asyncio.gather(*(adapter.aclose() for adapter in adapters), return_exceptions=True)


def adapter_class(kind: str) -> type[Adapter]:
    path = ADAPTERS.get(kind)
    if path is None:
        raise ProviderError(ErrorKind.SERVER, f"unknown provider kind {kind!r}")
    return import_string(path)


def _adapter_create(provider: ProviderSpec) -> Adapter:
    loop = asyncio.get_running_loop()
    adapter = adapter_class(provider.kind)(provider)
    with _loops_lock:
        _forget_closed_loops()
        live = _loops.setdefault(loop, _LoopAdapters())
    live.by_spec[provider] = adapter
    replaced = live.by_name.get(provider.name)
    live.by_name[provider.name] = provider
    if replaced is not None and replaced != provider and replaced in live.by_spec:
        _retire(live, live.by_spec.pop(replaced))
    return adapter


def _forget_closed_loops() -> None:
    # The weak key alone never lets go: a loop's aiohttp sessions hold the loop. A loop
    # closed without adapters_close() (asyncio.run per Celery task) is dropped here.
    for loop in [loop for loop in _loops.keys() if loop.is_closed()]:
        del _loops[loop]


def _retire(live: _LoopAdapters, adapter: Adapter) -> None:
    live.retiring[adapter] = asyncio.get_running_loop().create_task(_close_later(live, adapter))


async def _close_later(live: _LoopAdapters, adapter: Adapter) -> None:
    await asyncio.sleep(adapter.provider.timeout + CLOSE_GRACE_SECONDS)
    live.retiring.pop(adapter, None)
    await adapter.aclose()
