"""Failover, cooldown and diagnostics through the real SDKs against the simulated upstream."""

import time
from decimal import Decimal

import pytest

from modelhub.models import ModelHealth, UsageRecord


def _chain(hub, *kinds):
    models = [hub.model(f"m{i}-{kind}", kind) for i, kind in enumerate(kinds)]
    hub.route("pam", models)
    return models


def test_primary_answers_when_healthy(hub, sim):
    primary, _ = _chain(hub, "anthropic", "openai")
    body = hub.chat().json()
    assert (body["model"], body["source"], body["provider"]) == (primary.model_id, "primary", "sim-anthropic")
    assert [c.model for c in sim.calls] == [primary.model_id]


def test_fails_over_in_chain_order_across_providers(hub, sim):
    first, second, third = _chain(hub, "anthropic", "google", "openai")
    sim.set_fault(first.model_id, status=529)
    sim.set_fault(second.model_id, status=404)
    body = hub.chat().json()
    assert body["model"] == third.model_id
    assert body["source"] == "fallback_2"
    assert [a["outcome"] for a in body["attempts"]] == ["overloaded", "not_found", "ok"]
    assert [c.model for c in sim.calls] == [first.model_id, second.model_id, third.model_id]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"status": 401},
        {"malformed": True},
    ],
    ids=["500", "503", "429", "auth", "malformed"],
)
def test_each_failover_kind_moves_on(hub, sim, fault):
    primary, fallback = _chain(hub, "openai_compatible", "openai")
    sim.set_fault(primary.model_id, **fault)
    assert hub.chat().json()["model"] == fallback.model_id


def test_timeout_fails_over(hub, sim):
    primary, fallback = _chain(hub, "openai", "anthropic")
    hub.providers["openai"].timeout_seconds = 0.3
    hub.providers["openai"].save()
    sim.set_fault(primary.model_id, hang=True)
    body = hub.chat().json()
    assert body["model"] == fallback.model_id
    assert body["attempts"][0]["outcome"] == "timeout"


def test_callers_bad_request_does_not_fail_over(hub, sim):
    primary, _ = _chain(hub, "openai", "anthropic")
    sim.set_fault(primary.model_id, status=400)
    response = hub.chat()
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "provider_rejected_request"
    assert [c.model for c in sim.calls] == [primary.model_id]
    assert not ModelHealth.objects.filter(model=primary, state="cooling_down").exists()


def test_context_too_long_moves_to_a_larger_window(hub, sim):
    small = hub.model("small", "openai", context_window=8_000)
    same = hub.model("same", "anthropic", context_window=8_000)
    large = hub.model("large", "google", context_window=1_000_000)
    hub.route("pam", [small, same, large])
    sim.set_fault("small", status=400, error="context_length")
    body = hub.chat().json()
    assert body["model"] == "large"
    assert [c.model for c in sim.calls] == ["small", "large"]


def test_failed_model_is_skipped_on_the_next_request(hub, sim):
    primary, fallback = _chain(hub, "openai", "google")
    sim.set_fault(primary.model_id, status=500, times=1)
    hub.chat()
    seen = len(sim.calls)
    body = hub.chat().json()
    assert body["model"] == fallback.model_id
    assert body["source"] == "fallback_1"
    assert [c.model for c in sim.calls[seen:]] == [fallback.model_id]
    health = ModelHealth.objects.get(model=primary)
    assert health.state == "cooling_down"
    assert health.last_error_kind == "server"


def test_default_cooldown_is_five_minutes(hub, sim):
    primary, _ = _chain(hub, "openai", "google")
    sim.set_fault(primary.model_id, status=503)
    before = time.time()
    hub.chat()
    until = ModelHealth.objects.get(model=primary).cooldown_until.timestamp()
    assert 299 <= until - before <= 302


def test_429_retry_after_sets_cooldown(hub, sim):
    primary, _ = _chain(hub, "anthropic", "google")
    sim.set_fault(primary.model_id, status=429, retry_after=42)
    before = time.time()
    hub.chat()
    until = ModelHealth.objects.get(model=primary).cooldown_until.timestamp()
    assert 41 <= until - before <= 44


def test_all_cooling_down_makes_one_attempt_then_503_with_diagnostics(hub, sim):
    first, second = _chain(hub, "openai", "anthropic")
    sim.set_fault(first.model_id, status=429, retry_after=30)
    sim.set_fault(second.model_id, status=500)
    assert hub.chat().status_code == 503
    seen = len(sim.calls)
    response = hub.chat()
    body = response.json()
    assert response.status_code == 503
    assert [c.model for c in sim.calls[seen:]] == [first.model_id]  # recovers soonest (30 s < 300 s)
    states = {m["model"]: m for m in body["error"]["models"]}
    assert states[first.model_id]["state"] == "cooling_down"
    assert states[first.model_id]["last_error_kind"] == "rate_limited"
    assert states[second.model_id]["last_error_kind"] == "server"
    assert states[second.model_id]["cooldown_until"] is not None


def test_half_open_model_recovers_after_its_cooldown(hub, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "COOLDOWN_SECONDS": 0.2}
    primary, _ = _chain(hub, "openai", "google")
    sim.set_fault(primary.model_id, status=500, times=1)
    assert hub.chat().json()["source"] == "fallback_1"
    time.sleep(0.3)
    assert hub.chat().json()["source"] == "primary"
    assert ModelHealth.objects.get(model=primary).state == "healthy"


def test_usage_row_per_attempt_with_exact_cost(hub, sim):
    primary, fallback = _chain(hub, "openai", "anthropic")
    sim.set_fault(primary.model_id, status=500)
    body = hub.chat({"message": "one two three"}).json()
    rows = list(UsageRecord.objects.order_by("attempt"))
    assert [(r.model, r.outcome, r.attempt, r.is_fallback) for r in rows] == [
        (primary.model_id, "server", 1, False),
        (fallback.model_id, "ok", 2, True),
    ]
    ok = rows[1]
    assert (ok.input_tokens, ok.output_tokens) == (body["usage"]["input_tokens"], body["usage"]["output_tokens"])
    expected = (Decimal(ok.input_tokens) * 3 + Decimal(ok.output_tokens) * 15) / Decimal(1_000_000)
    assert ok.cost_usd == expected
    assert rows[0].cost_usd == 0
    assert {r.request_id for r in rows} == {body["request_id"]}


def test_sub_micro_dollar_costs_are_kept_unrounded(hub, sim):
    cheap = hub.model("cheap", "openai", input_price_per_mtok=Decimal("0.05"), output_price_per_mtok=Decimal("0.08"))
    hub.route("pam", [cheap])
    hub.chat({"message": "hi"})
    hub.chat({"message": "hi"})
    costs = [r.cost_usd for r in UsageRecord.objects.all()]
    assert all(0 < c < Decimal("0.000001") for c in costs)
    assert sum(costs) == 2 * costs[0]


def test_missing_provider_key_is_skipped_without_a_call(hub, sim, monkeypatch):
    hub.providers["anthropic"].api_key_env = "UNSET_KEY_VARIABLE"
    hub.providers["anthropic"].save()
    monkeypatch.delenv("UNSET_KEY_VARIABLE", raising=False)
    primary, fallback = _chain(hub, "anthropic", "openai")
    body = hub.chat().json()
    assert body["model"] == fallback.model_id
    assert body["attempts"][0] == {
        "model": primary.model_id,
        "provider": "sim-anthropic",
        "route": "pam",
        "outcome": "auth",
        "latency_ms": 0,
        "error": "UNSET_KEY_VARIABLE is not set",
        "reason": "key unset",
    }
    assert body["routing"]["skipped"] == [
        {"model": primary.model_id, "reason": "key unset: UNSET_KEY_VARIABLE is not set"}
    ]
    assert [c.model for c in sim.calls] == [fallback.model_id]
