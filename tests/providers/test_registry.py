import asyncio
import dataclasses
import gc
import weakref

import pytest

from modelhub.providers import registry
from modelhub.providers.anthropic import AnthropicAdapter
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.providers.google import GoogleAdapter
from modelhub.providers.openai import OpenAIAdapter
from modelhub.providers.openai_compatible import OpenAICompatibleAdapter
from modelhub.runtime import runtime

from .conftest import chat_request, model_spec, provider_spec

CLASSES = {
    "anthropic": AnthropicAdapter,
    "openai": OpenAIAdapter,
    "google": GoogleAdapter,
    "openai_compatible": OpenAICompatibleAdapter,
}


@pytest.fixture
async def spec(simulator):
    yield provider_spec("openai", simulator.base_url("openai"))
    await runtime().adapters.close()


async def test_each_kind_gets_its_adapter_class(kind, simulator):
    adapter = runtime().adapters.get(provider_spec(kind, simulator.base_url(kind)))

    assert type(adapter) is CLASSES[kind]
    await runtime().adapters.close()


async def test_same_spec_gives_the_same_adapter(spec):
    assert runtime().adapters.get(spec) is runtime().adapters.get(dataclasses.replace(spec))


async def test_changed_spec_gives_a_new_adapter(spec):
    first = runtime().adapters.get(spec)

    second = runtime().adapters.get(dataclasses.replace(spec, timeout=9.0))

    assert second is not first and second.provider.timeout == 9.0


async def test_replaced_adapter_is_closed_in_the_background(spec, monkeypatch, sim):
    monkeypatch.setattr(registry, "CLOSE_GRACE_SECONDS", 0.0)
    old = runtime().adapters.get(dataclasses.replace(spec, timeout=0.05))
    await old.chat(model_spec(old.provider), chat_request())

    new = runtime().adapters.get(spec)
    still_open = not old._client.is_closed()
    await asyncio.sleep(0.2)

    assert still_open and old._client.is_closed() and not new._client.is_closed()


async def test_replaced_adapter_keeps_serving_during_its_grace(spec, sim):
    old = runtime().adapters.get(spec)
    runtime().adapters.get(dataclasses.replace(spec, timeout=7.0))

    result = await old.chat(model_spec(spec), chat_request())

    assert result.finish_reason == "stop"


async def test_providers_with_other_names_live_side_by_side(spec):
    first = runtime().adapters.get(spec)

    runtime().adapters.get(dataclasses.replace(spec, name="other"))

    assert runtime().adapters.get(spec) is first


async def test_another_event_loop_gets_its_own_adapter(spec):
    async def build_and_close():
        adapter = runtime().adapters.get(spec)
        await runtime().adapters.close()
        return adapter

    here = runtime().adapters.get(spec)
    there = await asyncio.to_thread(asyncio.run, build_and_close())

    assert there is not here and runtime().adapters.get(spec) is here


async def test_adapters_close_closes_and_forgets_them(spec):
    first = runtime().adapters.get(spec)

    await runtime().adapters.close()

    assert first._client.is_closed() and runtime().adapters.get(spec) is not first


async def test_unknown_kind_is_a_provider_error(spec):
    with pytest.raises(ProviderError) as caught:
        runtime().adapters.get(dataclasses.replace(spec, kind="bard"))

    assert caught.value.kind is ErrorKind.SERVER


def test_adapter_for_outside_an_event_loop_refuses():
    with pytest.raises(RuntimeError):
        runtime().adapters.get(provider_spec("openai", "http://127.0.0.1:1/v1"))


def test_a_loop_closed_without_adapters_close_is_dropped_at_the_next_build(kind, simulator):
    loop = asyncio.run(_chat_and_leave_open(kind, simulator))

    asyncio.run(_build_only())
    gc.collect()

    assert loop() is None


async def _chat_and_leave_open(kind, simulator):
    provider = provider_spec(kind, simulator.base_url(kind))
    await runtime().adapters.get(provider).chat(model_spec(provider), chat_request())
    return weakref.ref(asyncio.get_running_loop())


async def _build_only():
    runtime().adapters.get(provider_spec("openai_compatible", "http://127.0.0.1:1/v1"))
    await runtime().adapters.close()


def test_preload_imports_the_adapters_it_is_given():
    from modelhub.providers.registry import adapter_classes_preload

    assert adapter_classes_preload(kinds={"openai", "anthropic"}) == ["anthropic", "openai"]
    with pytest.raises(ProviderError):
        adapter_classes_preload(kinds={"bard"})


def test_kinds_in_use_are_those_enabled_routes_can_call(db, simulator, monkeypatch):
    from modelhub.models import Route
    from modelhub.routing.snapshot import snapshot_build
    from tests.hubtools import KEY_ENV, Hub

    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    hub = Hub(simulator, None)
    unused = hub.route("unused", [hub.model("g", "google")])
    Route.objects.update(enabled=False)
    hub.route("used", [hub.model("a", "anthropic"), hub.model("o", "openai")])
    keyless = hub.model("k", "openai_compatible")
    keyless.provider.api_key_env = "UNSET_KEY_VARIABLE"
    keyless.provider.save()
    hub.route("keyless", [keyless])

    assert snapshot_build(version=1).provider_kinds_in_use() == {"anthropic", "openai"}
    unused.enabled = True
    unused.save()
    assert snapshot_build(version=2).provider_kinds_in_use() == {"anthropic", "google", "openai"}
