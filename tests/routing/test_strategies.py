"""Route strategies through the native endpoint: complexity (the tier picks the route, the
ledger keeps the tier, score and counterfactual cost, the metrics show the saving), cost
and latency order, a category's latency budget, the PAM hybrid paths, bare model ids in
the ledger, and retired models replaced by their successors."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from modelhub.models import Route, UsageRecord
from modelhub.runtime import runtime
from modelhub.stats import ModelStats

SIMPLE = "Hi, what time is it?"
COMPLEX = (
    "Design a distributed rate limiter for a multi-region API gateway. First analyse the trade-offs "
    "between token bucket and sliding window algorithms, then write the Python implementation with "
    "Redis Lua scripts, explain the consistency guarantees step by step, and finally compare the "
    "latency and cost of each approach:\n```python\ndef allow(key):\n    pass\n```"
)


@pytest.fixture
def hybrid(hub):
    cheap = hub.model("cheap", "openai", input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.6"))
    strong = hub.model("strong", "anthropic", input_price_per_mtok=Decimal("3"), output_price_per_mtok=Decimal("15"))
    simple, complex_ = hub.route("simple-chain", [cheap]), hub.route("strong-chain", [strong])
    Route.objects.filter(name="hybrid").delete()
    Route.objects.create(name="hybrid", strategy="complexity", simple_route=simple, complex_route=complex_)
    return hub


def stats_set(p50: dict[str, float], p95: dict[str, float] | None = None) -> None:
    """The router reads these figures (as if the window had measured them)."""
    p95 = p95 or {}
    keys = {*p50, *p95}
    runtime().stats.hold({k: ModelStats(10, 10, 1.0, p50.get(k), p95.get(k), None, None) for k in keys})


def ask(hub, text, route="hybrid", **body):
    response = hub.chat({"message": text, "route": route, **body})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_simple_request_takes_the_simple_route_and_records_its_saving(hybrid):
    body = ask(hybrid, SIMPLE)

    assert body["model"] == "cheap"
    row = UsageRecord.objects.get()
    assert (row.route, row.strategy, row.tier, row.arm) == ("hybrid", "complexity", "simple", "stable")
    assert row.score is not None and row.category == "simple"
    strong_cost = (row.input_tokens * Decimal(3) + row.output_tokens * Decimal(15)) / Decimal(1_000_000)
    assert row.counterfactual_cost_usd == strong_cost
    assert row.counterfactual_cost_usd > row.cost_usd


def test_a_complex_request_takes_the_complex_route(hybrid):
    body = ask(hybrid, COMPLEX)

    assert body["model"] == "strong"
    row = UsageRecord.objects.get()
    assert (row.tier, row.counterfactual_cost_usd) == ("complex", row.cost_usd)


def test_the_metrics_show_each_complexity_routes_split_and_saving(hybrid, admin_client):
    for text in (SIMPLE, SIMPLE, SIMPLE, COMPLEX):
        ask(hybrid, text)

    figures = admin_client.get("/api/v1/pam/metrics").json()["complexity"]["hybrid"]

    rows = list(UsageRecord.objects.all())
    assert (figures["requests"], figures["complex_requests"], figures["strong_share"]) == (4, 1, 0.25)
    assert figures["cost_usd"] == pytest.approx(float(sum(r.cost_usd for r in rows)))
    saving = sum(r.counterfactual_cost_usd - r.cost_usd for r in rows)
    assert figures["saving_usd"] == pytest.approx(float(saving)) and saving > 0


def test_the_pam_hybrid_paths_answer_on_route_hybrid(hybrid, client):
    response = client.post(
        "/api/v1/pam-hybrid/chat",
        {"message": SIMPLE},
        content_type="application/json",
        headers={"Authorization": f"Bearer {hybrid.key}"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["route"] == "simple-chain"
    assert client.get("/api/v1/pam-hybrid/health").status_code == 200


def test_a_complexity_route_with_no_usable_route_is_503(hybrid):
    Route.objects.filter(name__in=["simple-chain", "strong-chain"]).update(enabled=False)
    response = hybrid.chat({"message": SIMPLE, "route": "hybrid"})
    assert response.status_code == 503


def test_the_cost_strategy_tries_the_cheapest_model_first(hub, sim):
    dear = hub.model("dear", "anthropic", input_price_per_mtok=Decimal("3"), output_price_per_mtok=Decimal("15"))
    free = hub.model("unknown-price", "google", input_price_per_mtok=0, output_price_per_mtok=0)
    cheap = hub.model("cheap", "openai", input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.6"))
    route = hub.route("pam", [dear, free, cheap])
    route.strategy = "cost"
    route.save()

    assert ask(hub, SIMPLE, route="pam")["model"] == "cheap"
    sim.set_fault("cheap", status=500)
    body = ask(hub, SIMPLE, route="pam")
    assert [a["model"] for a in body["attempts"]] == ["cheap", "dear"]  # an unknown price goes last


def test_the_latency_strategy_tries_the_fastest_model_first(hub, sim):
    slow, fast, unknown = hub.model("slow"), hub.model("fast", "anthropic"), hub.model("new", "google")
    route = hub.route("pam", [unknown, slow, fast])
    route.strategy = "latency"
    route.save()
    stats_set({"sim-openai/slow": 900.0, "sim-anthropic/fast": 120.0})

    sim.set_fault("fast", status=500)
    body = ask(hub, SIMPLE, route="pam")

    assert [a["model"] for a in body["attempts"]] == ["fast", "slow"]


def test_a_category_budget_moves_slow_models_last(hub, sim):
    slow, quick = hub.model("slow"), hub.model("quick", "anthropic")
    route = hub.route("pam", [slow, quick])
    route.class_budgets_ms = {"simple": 5000}
    route.save()
    stats_set({"sim-openai/slow": 900.0}, p95={"sim-openai/slow": 8000.0, "sim-anthropic/quick": 300.0})

    assert ask(hub, SIMPLE, route="pam")["model"] == "quick"


def test_a_request_naming_a_model_id_is_recorded_under_no_route(hub):
    hub.route("pam", [hub.model("only")])
    hub.model("direct", "anthropic")
    assert ask(hub, SIMPLE, route="direct")["model"] == "direct"
    assert UsageRecord.objects.get().route == ""


def test_a_retired_model_is_replaced_by_its_successor(hub, sim):
    old, new = hub.model("old-model", "anthropic"), hub.model("new-model", "anthropic")
    old.retires_on, old.successor = date.today() - timedelta(days=1), new
    old.save()
    hub.route("pam", [old, hub.model("spare")])

    body = ask(hub, SIMPLE, route="pam")

    assert body["model"] == "new-model"
    assert body["source"] == "primary"
    skipped = body["attempts"][0]
    assert (skipped["model"], skipped["outcome"]) == ("old-model", "skipped")
    assert "retired" in skipped["reason"] and "new-model" in skipped["reason"]
    assert "old-model" not in {c.model for c in sim.calls}
