"""One log line per attempt and per request, with their fields, as JSON or plain text; the
request id on every line of the request."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from modelhub.models import Route, UsageRecord
from modelhub.observability.logs import JsonFormatter, PlainFormatter, RequestIdFilter


def _capture(formatter: logging.Formatter):
    """The lines the "modelhub" loggers write through a handler built as settings.LOGGING
    builds the console's (the request id filter, then ``formatter``)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("modelhub")
    logger.addHandler(handler)
    return logger, handler, stream


@pytest.fixture
def json_lines():
    logger, handler, stream = _capture(JsonFormatter())
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def plain_lines():
    logger, handler, stream = _capture(PlainFormatter())
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_each_attempt_and_the_request_have_a_json_line(hub, sim, json_lines):
    hub.route("pam", [hub.model("logs-primary", "anthropic"), hub.model("logs-fallback", "openai")])
    sim.set_fault("logs-primary", status=500)

    response = hub.chat()
    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    lines = json_lines()
    failed, answered = [line for line in lines if line["message"] == "attempt"]
    [request] = [line for line in lines if line["message"] == "request"]
    rows = {row.attempt: row for row in UsageRecord.objects.all()}

    assert all(line["request_id"] == request_id for line in lines)  # the failover note and the breaker's too
    assert {line["logger"] for line in lines} == {"modelhub.routing"}
    assert failed["level"] == "WARNING"
    assert (failed["model"], failed["provider"], failed["attempt"], failed["position"]) == (
        "logs-primary",
        "sim-anthropic",
        1,
        0,
    )
    assert (failed["outcome"], failed["error"]) == ("server", rows[1].error_message)
    assert answered["level"] == "INFO"
    second = rows[2]
    assert {key: answered[key] for key in ("route", "model", "attempt", "outcome", "latency_ms")} == {
        "route": "pam",
        "model": "logs-fallback",
        "attempt": 2,
        "outcome": "ok",
        "latency_ms": second.latency_ms,
    }
    assert (answered["tokens_in"], answered["tokens_out"]) == (second.input_tokens, second.output_tokens)
    assert answered["cost_usd"] == pytest.approx(float(second.cost_usd))
    assert (answered["strategy"], answered["arm"], answered["stream"]) == ("priority", "stable", False)
    assert "error" not in answered and "ttft_ms" not in answered  # None fields are left out

    assert request["level"] == "INFO"
    assert {key: request[key] for key in ("route", "model", "provider", "outcome", "attempts", "source")} == {
        "route": "pam",
        "model": "logs-fallback",
        "provider": "sim-openai",
        "outcome": "ok",
        "attempts": 2,
        "source": "fallback_1",
    }
    assert request["tokens_in"] == sum(row.input_tokens for row in rows.values())
    assert request["cost_usd"] == pytest.approx(float(sum(row.cost_usd for row in rows.values())))
    assert request["latency_ms"] >= answered["latency_ms"]


def test_a_complexity_route_logs_its_tier(hub, json_lines):
    cheap, strong = hub.model("logs-cheap", "openai"), hub.model("logs-strong", "anthropic")
    simple, complex_ = hub.route("logs-simple", [cheap]), hub.route("logs-complex", [strong])
    Route.objects.create(name="logs-hybrid", strategy="complexity", simple_route=simple, complex_route=complex_)

    assert hub.chat({"message": "Hi, what time is it?", "route": "logs-hybrid"}).status_code == 200
    [attempt] = [line for line in json_lines() if line["message"] == "attempt"]
    [request] = [line for line in json_lines() if line["message"] == "request"]
    for line in (attempt, request):
        assert (line["route"], line["strategy"], line["tier"], line["category"]) == (
            "logs-hybrid",
            "complexity",
            "simple",
            "simple",
        )


def test_a_request_that_fails_ends_with_a_warning_line(hub, sim, json_lines):
    hub.route("pam", [hub.model("logs-down", "google")])
    sim.set_fault("logs-down", status=500)

    assert hub.chat().status_code == 503
    [request] = [line for line in json_lines() if line["message"] == "request"]
    assert (request["level"], request["outcome"], request["attempts"], request["model"]) == (
        "WARNING",
        "server",
        1,
        "logs-down",
    )
    assert "source" not in request


def test_plain_lines_carry_the_same_fields(hub, plain_lines):
    hub.route("pam", [hub.model("logs-plain", "openai")])

    request_id = hub.chat()["X-Request-ID"]
    attempt, request = plain_lines()
    assert " INFO modelhub.routing attempt request_id=" + request_id in attempt
    assert "route=pam model=logs-plain provider=sim-openai attempt=1 position=0 outcome=ok" in attempt
    assert f" INFO modelhub.routing request request_id={request_id} " in request
    assert "outcome=ok attempts=1" in request
