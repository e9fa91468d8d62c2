"""Streaming through each SDK against the simulated upstream: deltas, then usage and the
finish reason on the last event; failures normalised into ProviderError."""

import pytest

from modelhub.providers.base import ErrorKind, ProviderError

from .conftest import chat_request


async def _collect(adapter, model, request=None):
    return [event async for event in adapter.stream(model, request or chat_request())]


async def test_stream_yields_deltas_then_usage(connect, kind):
    adapter, model = connect(kind)
    events = await _collect(adapter, model)
    *deltas, end = events
    assert len(deltas) > 1
    assert "".join(e.text for e in deltas) == f"Simulated reply from {model.model_id}."
    assert end.last and end.model == model.model_id and end.finish_reason == "stop"
    assert (end.input_tokens, end.output_tokens) == (2, 4)


async def test_stream_reports_length_when_cut_by_max_tokens(connect, kind):
    adapter, model = connect(kind)
    *deltas, end = await _collect(adapter, model, chat_request(max_tokens=2))
    assert end.finish_reason == "length"
    assert end.output_tokens == 2 and len(deltas) == 2


@pytest.mark.parametrize(
    "status, expected", [(429, ErrorKind.RATE_LIMITED), (500, ErrorKind.SERVER), (404, ErrorKind.NOT_FOUND)]
)
async def test_error_status_raises_before_any_event(connect, kind, sim, status, expected):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, status=status)
    with pytest.raises(ProviderError) as caught:
        await _collect(adapter, model)
    assert caught.value.kind is expected


async def test_dropped_connection_mid_stream_is_a_connection_error(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, cut_after_chunks=2)
    seen = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(model, chat_request()):
            seen.append(event.text)
    assert caught.value.kind is ErrorKind.CONNECTION
    assert "".join(seen) == "Simulated reply"


async def test_error_event_mid_stream_is_retryable(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, error_event_after_chunks=1)
    seen = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(model, chat_request()):
            seen.append(event.text)
    assert seen == ["Simulated"]
    assert caught.value.retryable
    assert caught.value.kind in (ErrorKind.SERVER, ErrorKind.OVERLOADED)


async def test_malformed_stream_is_a_server_error(connect, kind, sim):
    adapter, model = connect(kind)
    sim.set_fault(model.model_id, malformed=True)
    with pytest.raises(ProviderError) as caught:
        await _collect(adapter, model)
    assert caught.value.kind is ErrorKind.SERVER


async def test_closing_the_stream_early_releases_the_call(connect, kind):
    adapter, model = connect(kind)
    stream = adapter.stream(model, chat_request())
    first = await anext(stream)
    await stream.aclose()
    assert first.text == "Simulated"
    assert (await _collect(adapter, model))[-1].last  # the client is still usable
