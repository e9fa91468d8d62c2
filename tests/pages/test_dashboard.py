"""The dashboard's figures for a known ledger (tests/pages/conftest.py ``ledger``): the
last 24 hours per hour, route and model, latency percentiles, today's spend against the
alert rules, the live endpoint, the drill-down pages and the day picker."""

from datetime import timedelta
from decimal import Decimal

import pytest

from modelhub.costs import rollup_day
from modelhub.models import AlertRule, ModelHealth
from modelhub.selectors import today
from tests.factories import ModelHealthFactory

pytestmark = pytest.mark.django_db


def by(rows, name, value):
    return next(row for row in rows if row[name] == value)


def test_totals_of_the_last_24_hours(staff_client, ledger):
    totals = staff_client.get("/dashboard/").context["traffic"]["totals"]

    # A, B, C, D: B failed over, C failed; the probe and the row 30 hours old do not count.
    assert (totals["requests"], totals["fallbacks"], totals["errors"]) == (4, 1, 1)
    assert (totals["attempts"], totals["failures"]) == (6, 3)
    assert totals["cost"] == "$0.0035"
    # successful latencies 100, 200, 300 ms: p50 200, p95 290 (linear interpolation)
    assert (totals["p50"], totals["p95"]) == ("200 ms", "290 ms")


def test_the_hours_add_up_to_the_totals(staff_client, ledger):
    traffic = staff_client.get("/dashboard/").context["traffic"]

    assert len(traffic["hours"]) == 24
    assert sum(hour["requests"] for hour in traffic["hours"]) == 4
    current = by(traffic["hours"], "label", f"{ledger.when:%H:00}")
    assert (current["requests"], current["fallbacks"], current["errors"]) == (4, 1, 1)


def test_figures_per_route(staff_client, ledger):
    routes = staff_client.get("/dashboard/").context["routes"]

    r1, r2 = by(routes, "route", "r1"), by(routes, "route", "r2")
    assert (r1["requests"], r1["answered"], r1["fallbacks"], r1["errors"], r1["cost"]) == (3, 2, 1, 1, "$0.003")
    assert (r1["p50"], r1["p95"], r1["error_rate"]) == ("200 ms", "290 ms", "33.3%")
    assert (r2["requests"], r2["errors"], r2["p50"], r2["cost"]) == (1, 0, "200 ms", "$0.0005")


def test_figures_per_model_with_its_state(staff_client, ledger):
    ModelHealthFactory(model=_model(ledger.m1), cooling_down=True)

    models = staff_client.get("/dashboard/").context["models"]

    one, two = by(models, "model", ledger.m1), by(models, "model", ledger.m2)
    assert (one["attempts"], one["failures"], one["fallbacks"], one["cost"], one["p50"]) == (
        3,
        2,
        0,
        "$0.001",
        "100 ms",
    )
    assert (two["attempts"], two["failures"], two["fallbacks"], two["cost"]) == (3, 1, 1, "$0.0025")
    assert one["badge"]["state"] == "cooling_down" and two["badge"]["state"] == "healthy"


def _model(model_id):
    from modelhub.models import AIModel

    return AIModel.objects.get(model_id=model_id)


def test_the_tables_beside_the_charts_hold_the_numbers(staff_client, ledger):
    html = staff_client.get("/dashboard/").content.decode()

    for table in ("hourly-table", "routes-table", "models-table"):
        assert f'id="{table}"' in html
    assert 'data-chart="bar"' in html and "chart.umd.min.js" in html
    assert 'data-value="0.0025"' in html  # m2's cost, as the chart reads it
    # without JavaScript: no empty chart boxes, the hourly numbers open, no refresh switch
    assert html.count('<div class="chart') == html.count('<div class="chart chart-small" hidden>') + html.count(
        '<div class="chart" hidden>'
    )
    assert '<details class="numbers" open' in html and '<label class="live-toggle" hidden>' in html


def test_each_routes_chain_with_its_models_state(staff_client, ledger):
    ModelHealthFactory(model=_model(ledger.m1), cooling_down=True)

    chains = {item["route"].name: item for item in staff_client.get("/dashboard/").context["chains"]}

    r1 = chains["r1"]
    assert [row["model"].model_id for row in r1["rows"]] == [ledger.m1, ledger.m2]
    assert [row["now"] for row in r1["rows"]] == ["passed over: cooling down", "#1"]
    assert r1["answers_now"].startswith(f"{ledger.m2}; cooling down: {ledger.m1} until ")


def test_todays_spend_against_the_daily_cost_rules(staff_client, ledger):
    AlertRule.objects.create(name="all", metric="daily_cost", threshold=Decimal("0.05"))
    AlertRule.objects.create(
        name="r2 only", metric="daily_cost", threshold=Decimal("0.001"), scope="route", target="r2"
    )
    AlertRule.objects.create(name="average", metric="avg_cost_per_request", threshold=Decimal("1"))

    spend = staff_client.get("/dashboard/").context["spend"]

    if ledger.when.date() != today():
        pytest.skip("the ledger's rows fell on yesterday (the test ran just after midnight UTC)")
    assert (spend["total"], spend["probes"]) == ("$0.1035", "$0.10")  # probes are money spent
    rules = {item["rule"].name: item for item in spend["rules"]}
    assert {"all", "r2 only"} <= set(rules) and "average" not in rules  # not a spend rule
    assert (rules["all"]["spent"], rules["all"]["percent"], rules["all"]["over"]) == ("$0.1035", "207.0%", True)
    assert (rules["r2 only"]["spent"], rules["r2 only"]["percent"], rules["r2 only"]["over"]) == (
        "$0.0005",
        "50.0%",
        False,
    )


def test_live_endpoint_renders_every_section_anew(staff_client, ledger):
    response = staff_client.get("/dashboard/live")

    data = response.json()
    assert set(data["sections"]) == {"summary", "chains", "traffic", "routes", "spend", "models", "recent"}
    assert 'id="routes-table"' in data["sections"]["routes"]
    assert ">4</div>" in data["sections"]["summary"]  # the requests tile


def test_route_page(staff_client, ledger):
    response = staff_client.get("/dashboard/routes/r1/")

    context = response.context
    assert context["traffic"]["totals"]["requests"] == 3
    assert {row["model"] for row in context["models"]} == {ledger.m1, ledger.m2}
    assert sorted((row["outcome"], row["attempts"]) for row in context["errors"]) == [
        ("overloaded", 1),
        ("server", 1),
        ("timeout", 1),
    ]
    assert len(context["latest"]) == 6  # the latest, the old one too; never the probe
    assert "500 boom" in response.content.decode()


def test_model_page(staff_client, ledger):
    response = staff_client.get(f"/dashboard/models/{ledger.provider}/{ledger.m2}/")

    context = response.context
    assert (context["traffic"]["totals"]["attempts"], context["traffic"]["totals"]["cost"]) == (3, "$0.0025")
    assert {row["route"] for row in context["routes"]} == {"r1", "r2"}
    assert sorted(context["serves"]) == ["r1", "r2"]
    assert context["badge"]["state"] == "healthy"


def test_an_unknown_route_or_model_is_404(staff_client, ledger):
    assert staff_client.get("/dashboard/routes/nowhere/").status_code == 404
    assert staff_client.get("/dashboard/models/prov-pages/no-such-model/").status_code == 404


def test_a_model_gone_from_the_registry_keeps_its_ledger_page(staff_client, ledger):
    _model(ledger.m2).delete()

    response = staff_client.get(f"/dashboard/models/{ledger.provider}/{ledger.m2}/")

    assert response.status_code == 200
    assert response.context["traffic"]["totals"]["attempts"] == 3


def test_day_picker_reads_the_daily_rollup(staff_client, ledger):
    # three days back: the ledger fixture's 30-hour-old row lands one or two days back,
    # by the time of day the test runs
    day = ledger.when.date() - timedelta(days=3)
    _yesterday_row(ledger, day)
    rollup_day(day=day)

    response = staff_client.get(f"/dashboard/days/?day={day:%Y-%m-%d}")

    figures = response.context["figures"]
    assert (figures["totals"]["requests"], figures["totals"]["cost"]) == (1, "$0.25")
    assert [row["route"] for row in figures["routes"]] == ["r1"]
    assert by(response.context["days"], "day", day)["cost"] == "$0.25"


def _yesterday_row(ledger, day):
    from datetime import UTC, datetime, time

    from tests.factories import UsageRecordFactory

    UsageRecordFactory(
        created_at=datetime.combine(day, time(12), tzinfo=UTC),
        request_id="9" * 32,
        route="r1",
        provider=ledger.provider,
        model=ledger.m1,
        cost_usd=Decimal("0.25"),
    )


def test_day_without_a_rollup_says_so(staff_client, ledger):
    response = staff_client.get("/dashboard/days/?day=2020-02-02")

    assert response.status_code == 200
    assert "Nothing rolled up for this day" in response.content.decode()


@pytest.mark.parametrize("day", ["yesterday", "2026-13-45", "", "2026-1-1x", "9" * 500, "<script>"])
def test_a_bad_day_is_400_with_a_clear_message(staff_client, day):
    response = staff_client.get("/dashboard/days/", {"day": day})

    assert response.status_code == 400
    assert "Give it as YYYY-MM-DD" in response.content.decode()
    assert "<script>" not in response.content.decode().split("errornote")[1]


def test_a_day_still_to_come_is_400(staff_client):
    tomorrow = today() + timedelta(days=1)

    response = staff_client.get("/dashboard/days/", {"day": f"{tomorrow:%Y-%m-%d}"})

    assert response.status_code == 400
    assert "still to come" in response.content.decode()


def test_dashboard_without_any_traffic(staff_client):
    ModelHealth.objects.all().delete()

    response = staff_client.get("/dashboard/")

    assert response.status_code == 200
    assert response.context["traffic"]["totals"]["requests"] == 0
    assert "No requests in the last 24 hours." in response.content.decode()


@pytest.mark.parametrize(
    "raw, seconds", [(None, 10), ("3", 3), ("0", 2), ("9999", 10), ("x", 10), ("500", 300), ("\u00b2", 10)]
)
def test_refresh_pace(staff_client, raw, seconds):
    response = staff_client.get("/dashboard/", {"refresh": raw} if raw else {})

    assert response.context["live_seconds"] == seconds
