"""The operator's pages in a real browser (Debian's Chromium through Playwright) against a
real hub server on the simulated upstream: the dashboard's chart and table fed by real
requests and refreshed live; the playground streaming an answer, explaining it, showing
the failover once its button failed the primary, and continuing a conversation after a
reload; the admin's route page, ledger, model health, configuration changes and index.
Each test saves the screenshots the README shows, 1440 px wide: into docs/screenshots/ when
MODELHUB_SCREENSHOTS names it (so a test run leaves the checkout as it was), else into a
temporary folder:

    MODELHUB_SCREENSHOTS=docs/screenshots bin/test tests/e2e/test_pages_browser.py   # refresh the README's
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelhub.models import UsageRecord
from tests.e2e.conftest import needs_postgres
from tests.e2e.test_browser import CHROMIUM, browser_page, pam, sign_in  # noqa: F401 - pam: a fixture

SCREENSHOTS = Path(os.environ.get("MODELHUB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "modelhub-screenshots")
VIEWPORT = {"width": 1440, "height": 900}
PAGE_HEIGHT = 1500  # the dashboard's shot: its top, charts included

pytestmark = [
    needs_postgres,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.django_db(transaction=True),
]


def ledger_holds(count: int, timeout: float = 10.0) -> None:
    """Wait until the server's ledger writer has stored ``count`` client attempts."""
    deadline = time.monotonic() + timeout
    while UsageRecord.objects.filter(is_probe=False).count() < count:
        assert time.monotonic() < deadline, "the ledger did not fill"
        time.sleep(0.1)


def shot(page, name: str, *, height: int | None = None) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
    page.screenshot(path=str(SCREENSHOTS / name), full_page=bool(height), clip=clip)


def table_row(page, table: str, label: str) -> list[str]:
    return page.locator(f"#{table} tbody tr").filter(has_text=label).first.locator("td").all_inner_texts()


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_dashboard_chart_and_table_fed_by_real_requests(pam, e2e_hub, hub_servers, sim):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    server.chat(e2e_hub.key)
    sim.set_fault("primary-m", status=529, times=1)
    assert server.chat(e2e_hub.key)["source"] == "fallback_1"
    ledger_holds(3)  # one answer, then a failed attempt and the fallback's answer
    with sync_api.sync_playwright() as playwright:  # no ORM inside: Playwright runs an event loop
        page = browser_page(playwright, VIEWPORT)
        sign_in(page, server)
        page.goto(f"{server.url}/dashboard/?refresh=2")
        chart = page.locator("figure:has(#routes-table) canvas")
        chart.wait_for(state="visible")
        drawn = page.evaluate(
            "() => Chart.getChart(document.querySelector('figure:has(#routes-table) canvas')).data.datasets"
            ".map(d => [d.label, d.data])"
        )
        pam_row = table_row(page, "routes-table", "pam")
        server.chat(e2e_hub.key)  # the page refreshes itself: 3 requests now
        page.wait_for_function("document.querySelector('[data-figure=requests]').textContent.trim() === '3'")
        refreshed_row = table_row(page, "routes-table", "pam")
        shot(page, "dashboard.png", height=PAGE_HEIGHT)
    # answered, errors, failovers, error rate: from the two requests of the ledger
    assert pam_row[:3] == ["2", "0", "1"]
    assert drawn[0][0] == "answered" and 2 in drawn[0][1]  # the chart draws the table's numbers
    assert refreshed_row[:3] == ["3", "0", "2"]  # the primary cools down: the fallback answered again


def explanation_of(page, answer: int) -> dict:
    turn = page.locator(".turn-assistant").nth(answer)
    turn.locator(".meta").wait_for()
    return {
        "model": turn.get_attribute("data-model"),
        "source": turn.get_attribute("data-source"),
        "why": turn.locator(".explanation summary").inner_text(),
        "attempts": turn.locator("table.attempts tbody tr").all_inner_texts(),
    }


def ask(page, message: str) -> None:
    page.fill("#message", message)
    page.click("#send")
    page.locator("#send:enabled").wait_for()


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_playground_streams_and_explains_the_failover(pam, e2e_hub, hub_servers, sim):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    with sync_api.sync_playwright() as playwright:
        page = browser_page(playwright, VIEWPORT)
        answers = []
        page.on(
            "response", lambda r: answers.append(r.headers.get("content-type")) if "/playground/chat" in r.url else None
        )
        sign_in(page, server)
        page.goto(f"{server.url}/playground/?route=pam")
        ask(page, "Hello")
        first = explanation_of(page, 0)
        page.locator("#fault-panel").wait_for(state="visible")
        page.click("#fail-primary")
        page.locator("#fault-status", has_text="now fails").wait_for()
        ask(page, "And now?")
        second = explanation_of(page, 1)
        ask(page, "Once more")
        third = explanation_of(page, 2)
        shot(page, "playground.png")
        page.click("#restore-primary")
        page.locator("#fault-status", has_text="back in rotation").wait_for()
    assert answers and all(kind.startswith("text/event-stream") for kind in answers)  # streamed
    assert (first["model"], first["source"], first["why"]) == ("primary-m", "primary", "Why this model (primary)")
    assert (second["model"], second["source"]) == ("fallback-m", "fallback_1")
    assert [row.split("\t")[1:5] for row in second["attempts"]] == [
        ["primary-m", "sim-anthropic", "pam", "overloaded"],
        ["fallback-m", "sim-google", "pam", "ok"],
    ]
    assert third["model"] == "fallback-m" and "primary-m: cooling down until" in third["why"]
    assert "primary-m" not in sim.faults  # restored


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_playground_continues_a_conversation_after_a_reload(pam, e2e_hub, hub_servers, sim):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    with sync_api.sync_playwright() as playwright:
        page = browser_page(playwright, VIEWPORT)
        sign_in(page, server)
        page.goto(f"{server.url}/playground/?route=pam")
        ask(page, "My name is Ada.")
        explanation_of(page, 0)
        conversation = page.evaluate("new URL(location.href).searchParams.get('conversation')")
        page.reload()
        earlier = page.locator(".turn-earlier .text").all_inner_texts()
        ask(page, "What is my name?")
        explanation_of(page, 1)  # after the earlier answer, shown again
        after = page.evaluate("new URL(location.href).searchParams.get('conversation')")
    sent = [m["content"] for m in sim.calls[-1].body["messages"]]
    assert conversation and conversation == after
    assert earlier == ["My name is Ada.", "Simulated reply from primary-m."]
    assert _texts(sent) == ["My name is Ada.", "Simulated reply from primary-m.", "What is my name?"]


def _texts(contents) -> list[str]:
    """Anthropic's message contents, as strings or text blocks."""
    return [c if isinstance(c, str) else "".join(b.get("text", "") for b in c) for c in contents]


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_admin_console_route_page_ledger_and_index(pam, e2e_hub, hub_servers, sim):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    sim.set_fault("primary-m", status=529, times=1)
    server.chat(e2e_hub.key)
    server.chat(e2e_hub.key)
    ledger_holds(2)
    today = datetime.now(UTC)
    day = f"created_at__day={today.day}&created_at__month={today.month}&created_at__year={today.year}"
    with sync_api.sync_playwright() as playwright:
        page = browser_page(playwright, VIEWPORT)
        sign_in(page, server)
        sections = page.locator("#content-main .module caption").all_inner_texts()
        shot(page, "admin-index.png")
        page.goto(f"{server.url}/admin/modelhub/route/{pam.pk}/change/")
        rows = page.locator("#chain-now tbody tr").all_inner_texts()
        answers_now = page.locator("#chain-now .answers-now").inner_text()
        shot(page, "route-admin.png")
        page.click("#chain-now button.make-primary")
        message = page.inner_text(".messagelist")
        order = page.locator("#chain-now tbody tr td:nth-child(2)").all_inner_texts()
        page.goto(f"{server.url}/admin/modelhub/usagerecord/?{day}")
        totals = page.inner_text("#ledger-totals")
        cost_edge = page.locator("#result_list th.column-cost").bounding_box()
        outcome_edge = page.locator("#result_list th.column-outcome_shown").bounding_box()
        shot(page, "ledger.png")
        page.goto(f"{server.url}/admin/modelhub/modelhealth/")
        health = page.locator("#result_list tbody tr").all_inner_texts()
        shot(page, "model-health.png")
        page.goto(f"{server.url}/admin/modelhub/configchange/")
        change = page.locator("#result_list tbody tr").first.inner_text()
        shot(page, "config-changes.png")
    assert [s.split(":")[0].strip().lower() for s in sections[1:5]] == ["registry", "traffic", "money", "schedules"]
    assert "primary-m" in rows[0] and "cooling down until" in rows[0] and "$3.00 / $15.00" in rows[0]
    assert "cooling down: primary-m until" in answers_now  # the failover cooled it down
    assert message.lower() == "fallback-m is now primary of pam."
    assert order == ["fallback-m", "primary-m"]
    assert "Totals of the 3 attempts" in totals and "2 requests" in totals
    assert cost_edge["x"] + cost_edge["width"] <= VIEWPORT["width"] and outcome_edge["x"] < cost_edge["x"]
    # fallback-m never failed (no health row) and is listed all the same
    assert {"fallback-m", "primary-m"} <= {row.split("\t")[1] for row in health}
    assert "fallback-m → primary-m (fallback-m 2 → 1; primary-m 1 → 2)" in change
