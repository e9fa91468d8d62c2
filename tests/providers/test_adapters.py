"""Each adapter, through its real SDK, against the simulated upstream over loopback HTTP."""

import pytest

from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.runtime import runtime

from .conftest import KEY, chat_request, closed_port, provider_spec

K = ErrorKind


async def chat_error(adapter, model, request=None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, request or chat_request())
    return caught.value


# -- answers --


async def test_chat_returns_text_model_tokens_and_finish_reason(connect, kind):
    adapter, model = connect(kind)

    result = await adapter.chat(model, chat_request("Hello there friend", system="Be brief"))

    assert result.text == f"Simulated reply from {model.model_id}."
    assert result.model == model.model_id
    assert (result.input_tokens, result.output_tokens) == (5, 4)
    assert result.finish_reason == "stop"


async def test_max_tokens_below_reply_length_truncates_with_length(connect, kind):
    adapter, model = connect(kind)

    result = await adapter.chat(model, chat_request(max_tokens=2))

    assert (result.text, result.output_tokens, result.finish_reason) == ("Simulated reply", 2, "length")


async def test_conversation_keeps_turn_order(connect, kind, sim):
    adapter, model = connect(kind)

    result = await adapter.chat(model, chat_request("one two", "three", "four five six"))

    assert result.input_tokens == 6
    assert len(sim.calls) == 1


# -- errors --


@pytest.mark.parametrize(
    "status, expected",
    [
        (404, K.NOT_FOUND),
        (500, K.SERVER),
        (502, K.SERVER),
        (503, K.OVERLOADED),
        (529, K.OVERLOADED),
        (400, K.BAD_REQUEST),
        (413, K.BAD_REQUEST),
        (422, K.BAD_REQUEST),
        (403, K.AUTH),
        (408, K.TIMEOUT),
    ],
)
async def test_error_status_maps_to_kind(connect, kind, sim, status, expected):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=status)

    error = await chat_error(adapter, model)

    assert (error.kind, error.status) == (expected, status)
    assert error.retryable is (expected not in (K.BAD_REQUEST, K.CONTEXT_TOO_LONG))


@pytest.mark.parametrize("retry_after", [3, 1.5])
async def test_429_carries_retry_after(connect, kind, sim, retry_after):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=429, retry_after=retry_after)

    error = await chat_error(adapter, model)

    assert (error.kind, error.retry_after) == (K.RATE_LIMITED, retry_after)


async def test_429_without_retry_after_has_none(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=429)

    assert (await chat_error(adapter, model)).retry_after is None


async def test_rejected_key_is_auth_error_without_the_key(connect, kind, sim):
    sim.valid_keys = {"some-other-key"}
    adapter, model = connect(kind)

    error = await chat_error(adapter, model)

    assert (error.kind, error.status) == (K.AUTH, 401)
    assert KEY not in str(error) and KEY not in repr(error)


async def test_context_length_error_is_context_too_long(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, error="context_length")

    error = await chat_error(adapter, model)

    assert (error.kind, error.status, error.retryable) == (K.CONTEXT_TOO_LONG, 400, False)


async def test_plain_400_is_not_context_too_long(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=400)

    assert (await chat_error(adapter, model)).kind is K.BAD_REQUEST


async def test_hanging_upstream_times_out(connect, kind, sim):
    adapter, model = connect(kind, timeout=0.5)
    sim.set_fault(model.model_id, hang=True)

    error = await chat_error(adapter, model)

    assert error.kind is K.TIMEOUT


async def test_closed_port_is_connection_error(connect, kind, simulator):
    url = simulator.base_url(kind).replace(f":{simulator.port}/", f":{closed_port()}/")
    adapter, model = connect(kind, base_url=url)

    error = await chat_error(adapter, model)

    assert error.kind is K.CONNECTION


async def test_malformed_200_is_server_error(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, malformed=True)

    error = await chat_error(adapter, model)

    assert error.kind is K.SERVER


async def test_error_keeps_the_sdk_exception(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=500)

    error = await chat_error(adapter, model)

    assert error.original is not None and error.__cause__ is error.original
    assert type(error.original).__module__.split(".")[0] in {"openai", "anthropic", "google"}


async def test_fault_that_clears_lets_the_next_call_succeed(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=503, times=1)

    await chat_error(adapter, model)
    result = await adapter.chat(model, chat_request())

    assert result.finish_reason == "stop"


async def test_missing_key_is_auth_error_before_any_call(kind, simulator, sim):
    if kind == "openai_compatible":
        pytest.skip("keyless endpoints (Ollama, vLLM) are allowed")
    provider = provider_spec(kind, simulator.base_url(kind), api_key=None)

    with pytest.raises(ProviderError) as caught:
        runtime().adapters.get(provider)

    assert caught.value.kind is K.AUTH and "$" + provider.api_key_env in caught.value.message
    assert sim.calls == []


async def test_openai_compatible_works_without_a_key(connect, sim):
    adapter, model = connect("openai_compatible", api_key=None)

    result = await adapter.chat(model, chat_request())

    assert result.text and sim.calls[-1].api_key


async def test_openai_compatible_needs_a_base_url():
    provider = provider_spec("openai_compatible", None)

    with pytest.raises(ProviderError) as caught:
        runtime().adapters.get(provider)

    assert caught.value.kind is K.CONNECTION
