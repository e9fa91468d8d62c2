"""Per-model parameter translation, read off the request body the simulator received."""

import pytest

from .conftest import chat_request

OPENAI_WIRES = ("openai", "openai_compatible")


def max_tokens_sent(kind: str, body: dict):
    if kind == "google":
        return body.get("generationConfig", {}).get("maxOutputTokens")
    return body.get("max_completion_tokens", body.get("max_tokens"))


def temperature_sent(kind: str, body: dict):
    return body.get("generationConfig", {}).get("temperature") if kind == "google" else body.get("temperature")


async def test_temperature_sent_where_the_model_takes_it(connect, kind, sim):
    adapter, model = connect(kind)

    await adapter.chat(model, chat_request(temperature=0.3))

    assert temperature_sent(kind, sim.calls[-1].body) == 0.3


async def test_temperature_absent_where_the_model_takes_none(connect, kind, sim):
    adapter, model = connect(kind, model_fields={"supports_temperature": False})

    await adapter.chat(model, chat_request(temperature=0.3))

    assert temperature_sent(kind, sim.calls[-1].body) is None
    assert "temperature" not in str(sim.calls[-1].body)


async def test_temperature_absent_when_not_asked(connect, kind, sim):
    adapter, model = connect(kind)

    await adapter.chat(model, chat_request())

    assert "temperature" not in str(sim.calls[-1].body)


async def test_max_tokens_clamped_to_the_model_maximum(connect, kind, sim):
    adapter, model = connect(kind, model_fields={"max_output_tokens": 50})

    await adapter.chat(model, chat_request(max_tokens=10_000))

    assert max_tokens_sent(kind, sim.calls[-1].body) == 50


async def test_without_max_tokens_only_anthropic_is_sent_a_limit_the_models_maximum(connect, kind, sim):
    adapter, model = connect(kind)

    await adapter.chat(model, chat_request())

    expected = model.max_output_tokens if kind == "anthropic" else None  # Anthropic requires one
    assert max_tokens_sent(kind, sim.calls[-1].body) == expected


@pytest.mark.parametrize("kind", OPENAI_WIRES)
async def test_max_completion_tokens_sent_for_a_model_that_names_it(connect, kind, sim):
    adapter, model = connect(kind, model_fields={"max_tokens_param": "max_completion_tokens"})

    await adapter.chat(model, chat_request(max_tokens=77))

    body = sim.calls[-1].body
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body


@pytest.mark.parametrize("kind", OPENAI_WIRES)
async def test_max_tokens_sent_by_default(connect, kind, sim):
    adapter, model = connect(kind)

    await adapter.chat(model, chat_request(max_tokens=77))

    body = sim.calls[-1].body
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body


@pytest.mark.parametrize("kind", OPENAI_WIRES)
async def test_openai_system_text_goes_first_as_a_system_message(connect, kind, sim):
    adapter, model = connect(kind)

    await adapter.chat(model, chat_request("Hi", "Hello", "Bye", system="Be brief"))

    roles = [(m["role"], m["content"]) for m in sim.calls[-1].body["messages"]]
    assert roles == [("system", "Be brief"), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")]


async def test_anthropic_system_is_top_level_and_temperature_in_body(connect, sim):
    adapter, model = connect("anthropic")

    await adapter.chat(model, chat_request("Hi", system="Be brief", temperature=0.7, max_tokens=9))

    body = sim.calls[-1].body
    assert (body["system"], body["temperature"], body["max_tokens"]) == ("Be brief", 0.7, 9)
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_anthropic_without_system_sends_none(connect, sim):
    adapter, model = connect("anthropic")

    await adapter.chat(model, chat_request("Hi"))

    assert "system" not in sim.calls[-1].body


async def test_gemini_sends_system_instruction_and_generation_config(connect, sim):
    adapter, model = connect("google")

    await adapter.chat(model, chat_request("Hi", "Hello", system="Be brief", temperature=0.2, max_tokens=12))

    body = sim.calls[-1].body
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief"}]
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 12}
    assert [c["role"] for c in body["contents"]] == ["user", "model"]


async def test_gemini_calls_v1beta_with_the_key_in_a_header(connect, sim):
    adapter, model = connect("google")

    await adapter.chat(model, chat_request())

    call = sim.calls[-1]
    assert call.path == f"/gemini/v1beta/models/{model.model_id}:generateContent"
    assert call.api_key == model.provider.api_key
