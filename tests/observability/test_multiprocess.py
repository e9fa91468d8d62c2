"""/metrics across processes: two real uvicorn servers on one PostgreSQL share a
PROMETHEUS_MULTIPROC_DIR; either one's /metrics, parsed by prometheus_client's parser,
counts the requests both served, equal to the ledger. A dead process's counts stay, its
live gauge goes; a new run starts from an empty directory."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections import Counter

import pytest

from modelhub.models import UsageRecord
from tests.e2e.conftest import e2e_hub, hub_server_start, needs_postgres, servers_running  # noqa: F401 - e2e_hub: a fixture
from tests.observability.conftest import samples, value

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]
PER_SERVER = 4


@pytest.fixture
def chain(e2e_hub, sim):
    """Route "pam": a primary that fails with 500 (each server cools it down once it has
    seen it fail), a fallback that answers."""
    e2e_hub.route("pam", [e2e_hub.model("mp-primary", "openai"), e2e_hub.model("mp-fallback", "anthropic")])
    sim.set_fault("mp-primary", status=500)
    return e2e_hub


def _scrape(server) -> dict:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        return samples(response.read().decode())


def _ledger(answered: int) -> list[UsageRecord]:
    """The rows of the requests, once the servers' writers have stored the last of them."""
    deadline = time.monotonic() + 20
    while UsageRecord.objects.filter(outcome="ok").count() < answered and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(UsageRecord.objects.all())


def _assert_counts_match(parsed: dict, rows: list[UsageRecord]) -> None:
    for (model, outcome), count in Counter((row.model, row.outcome) for row in rows).items():
        assert value(parsed, "modelhub_attempts_total", route="pam", model=model, outcome=outcome) == count
        assert value(parsed, "gen_ai_client_operation_duration_seconds_count", model=model, outcome=outcome) == count
    assert value(parsed, "modelhub_attempts_total") == len(rows)
    requests = {row.request_id for row in rows}
    assert value(parsed, "modelhub_requests_total", route="pam", outcome="ok") == len(requests)
    assert value(parsed, "gen_ai_client_token_usage_sum", token_type="output") == sum(r.output_tokens for r in rows)
    assert value(parsed, "modelhub_cost_usd_total") == pytest.approx(float(sum(r.cost_usd for r in rows)))


def test_two_processes_count_together_and_match_the_ledger(chain, tmp_path):
    directory = tmp_path / "prometheus"
    with servers_running(2, PROMETHEUS_MULTIPROC_DIR=str(directory)) as (a, b):
        for server in (a, b):
            for _ in range(PER_SERVER):
                assert server.chat(chain.key)["model"] == "mp-fallback"
            status, _ = server.request("POST", "/api/v1/pam/chat", {"message": "Hi", "route": "made-up"}, chain.key)
            assert status == 404
        rows = _ledger(answered=2 * PER_SERVER)
        from_a, from_b = _scrape(a), _scrape(b)

        assert {row.model for row in rows if row.outcome == "server"} == {"mp-primary"}
        for parsed in (from_a, from_b):
            _assert_counts_match(parsed, rows)
            assert value(parsed, "modelhub_failovers_total", model="mp-primary", outcome="server") == sum(
                row.outcome == "server" for row in rows
            )
            assert value(parsed, "modelhub_requests_total", route="made-up") == 0
            assert value(parsed, "modelhub_inflight_requests") == 0

        # B dies without a word: its counts stay in the totals, its live gauge goes once
        # another process joins the directory.
        b.process.send_signal(signal.SIGKILL)
        b.process.wait()
        assert (directory / f"gauge_livesum_{b.process.pid}.db").exists()
        c = hub_server_start(PROMETHEUS_MULTIPROC_DIR=str(directory))
        try:
            c.wait_ready()
            _scrape(c)
            assert not (directory / f"gauge_livesum_{b.process.pid}.db").exists()
            assert (directory / f"counter_{b.process.pid}.db").exists()
            _assert_counts_match(_scrape(c), rows)
        finally:
            c.stop()

    # A new run (no process of the last one alive) starts counting from nothing.
    with servers_running(1, PROMETHEUS_MULTIPROC_DIR=str(directory)) as (d,):
        assert value(_scrape(d), "modelhub_attempts_total") == 0
        assert not any(name.startswith(f"counter_{a.process.pid}") for name in os.listdir(directory))


def test_the_scrape_is_the_text_format_or_openmetrics_on_request(chain, tmp_path):
    with servers_running(1, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus")) as (server,):
        server.chat(chain.key)
        request = urllib.request.Request(
            f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            text = response.read().decode()
        assert text.rstrip().endswith("# EOF")
        assert "modelhub_requests_total" in text
