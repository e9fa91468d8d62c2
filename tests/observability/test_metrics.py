"""GET /metrics in one process: what each request and attempt adds, parsed by
prometheus_client's own parser, against the ledger; bounded labels; the model states."""

from __future__ import annotations

import urllib.request
from collections import Counter

import orjson
import pytest

from modelhub.models import UsageRecord
from modelhub.probes import probes_run
from tests.hubserver import hub_server, ledger_rows, live  # noqa: F401 - fixtures
from tests.observability.conftest import samples, series, value


def _metrics(hub) -> dict:
    response = hub.client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


@pytest.fixture
def chain(hub, sim):
    """Route "pam": a primary that fails with 500, then a fallback that answers."""
    primary, fallback = hub.model("obs-primary", "anthropic"), hub.model("obs-fallback", "openai")
    hub.route("pam", [primary, fallback])
    sim.set_fault("obs-primary", status=500)
    return primary, fallback


def test_requests_attempts_tokens_and_cost_match_the_ledger(hub, chain):
    for _ in range(3):
        assert hub.chat().status_code == 200

    parsed = _metrics(hub)
    rows = UsageRecord.objects.filter(route="pam")
    by_attempt = Counter((row.model, row.outcome) for row in rows)
    assert by_attempt == {("obs-primary", "server"): 1, ("obs-fallback", "ok"): 3}  # the primary cools down
    for (model, outcome), count in by_attempt.items():
        assert value(parsed, "modelhub_attempts_total", route="pam", model=model, outcome=outcome) == count
        assert value(parsed, "gen_ai_client_operation_duration_seconds_count", model=model, outcome=outcome) == count
    assert value(parsed, "modelhub_requests_total", route="pam", model="obs-fallback", outcome="ok") == 3
    assert value(parsed, "modelhub_request_duration_seconds_count", route="pam") == 3
    assert value(parsed, "modelhub_failovers_total", route="pam", model="obs-primary", outcome="server") == 1
    tokens_in = sum(row.input_tokens for row in rows)
    tokens_out = sum(row.output_tokens for row in rows)
    assert value(parsed, "gen_ai_client_token_usage_sum", route="pam", token_type="input") == tokens_in
    assert value(parsed, "gen_ai_client_token_usage_sum", route="pam", token_type="output") == tokens_out
    cost = float(sum(row.cost_usd for row in rows))
    assert value(parsed, "modelhub_cost_usd_total", route="pam") == pytest.approx(cost, rel=1e-9)
    assert cost > 0


def test_a_stream_records_its_time_to_first_chunk(live, sim):
    live.route("pam", [live.model("obs-streamer", "google")])
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi", "stream": True}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b"event: done" in response.read()
    [row] = ledger_rows("obs-streamer", until=lambda rows: rows)

    parsed = _metrics(live)
    ok = {"route": "pam", "model": "obs-streamer", "outcome": "ok"}
    assert value(parsed, "gen_ai_client_operation_time_to_first_chunk_seconds_count", **ok) == 1
    assert value(parsed, "modelhub_requests_total", **ok) == 1
    assert row.stream and row.ttft_ms is not None


def test_a_request_nothing_answers_counts_under_its_last_outcome(hub, sim):
    only = hub.model("obs-broken", "openai")
    hub.route("pam", [only])
    sim.set_fault("obs-broken", status=500)

    assert hub.chat().status_code == 503
    parsed = _metrics(hub)
    assert value(parsed, "modelhub_requests_total", route="pam", model="obs-broken", outcome="server") == 1
    assert value(parsed, "modelhub_failovers_total") == 0  # nothing to fail over to


def test_names_the_caller_makes_up_never_become_series(hub, chain):
    _, fallback = chain
    assert hub.chat({"message": "Hi", "route": "no-such-route"}).status_code == 404
    assert hub.chat({"message": "Hi", "route": "gpt-made-up"}).status_code == 404
    assert hub.chat({"message": "Hi", "route": fallback.model_id}).status_code == 200  # a bare model id

    parsed = _metrics(hub)
    names = {
        labels.get(key)
        for name in ("modelhub_requests_total", "modelhub_attempts_total")
        for labels in series(parsed, name)
        for key in ("route", "model")
    }
    assert "no-such-route" not in names and "gpt-made-up" not in names
    # a request on a model id counts under route "": the id is a registry name, not the caller's
    assert value(parsed, "modelhub_requests_total", route="", model=fallback.model_id, outcome="ok") == 1


def test_model_states_follow_the_breaker(hub, chain):
    primary, fallback = chain
    assert hub.chat().status_code == 200  # the primary fails and cools down

    parsed = _metrics(hub)
    assert value(parsed, "modelhub_model_state", model=primary.model_id, state="cooling_down") == 1
    assert value(parsed, "modelhub_model_state", model=primary.model_id, state="healthy") == 0
    assert value(parsed, "modelhub_model_state", model=fallback.model_id, state="healthy") == 1


def test_probes_are_counted_apart_from_requests(hub, sim, chain):
    probes_run(force=True)

    parsed = _metrics(hub)
    assert value(parsed, "modelhub_probes_total", model="obs-primary", outcome="server") == 1
    assert value(parsed, "modelhub_probes_total", model="obs-fallback", outcome="ok") == 1
    assert value(parsed, "modelhub_requests_total") == 0
    assert value(parsed, "modelhub_attempts_total") == 0
