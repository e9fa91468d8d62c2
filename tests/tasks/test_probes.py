"""Health probes: one small real request per routed model, through the circuit breaker."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from modelhub import tasks
from modelhub.models import AIModel, ModelHealth, Provider, UsageRecord
from modelhub.probes import probes_run
from tests.factories import ModelHealthFactory

pytestmark = pytest.mark.django_db


def _cooling(model):
    return ModelHealthFactory(model=model, cooling_down=True, cooldown_until=timezone.now() + timedelta(minutes=5))


def test_probe_round_calls_each_routed_model_once_and_records_probe_usage(hub, sim):
    a, b = hub.model("probe-a", "anthropic"), hub.model("probe-b", "google")
    hub.route("first", [a, b])
    hub.route("second", [b])
    hub.model("probe-unrouted", "openai")

    results = probes_run()

    assert sorted(r.model.model_id for r in results) == ["probe-a", "probe-b"]
    assert {c.model for c in sim.calls} == {"probe-a", "probe-b"} and len(sim.calls) == 2
    rows = UsageRecord.objects.filter(is_probe=True)
    assert sorted(rows.values_list("model", flat=True)) == ["probe-a", "probe-b"]
    assert all(r.outcome == "ok" and r.route == "" and r.cost_usd > 0 for r in rows)


def test_failing_probe_starts_cooldown_of_a_healthy_model(hub, sim):
    model = hub.model("probe-sick", "openai")
    hub.route("r", [model])
    sim.set_fault("probe-sick", status=500)

    [result] = probes_run()

    assert result.outcome == "server"
    health = ModelHealth.objects.get(model=model)
    assert health.state == "cooling_down" and health.cooldown_until > timezone.now()
    assert UsageRecord.objects.get(is_probe=True).outcome == "server"


def test_passing_probe_ends_cooldown_early_half_open_recovery(hub, sim):
    primary, backup = hub.model("probe-primary", "anthropic"), hub.model("probe-backup", "openai")
    hub.route("pam", [primary, backup])
    _cooling(primary)
    assert hub.chat().json()["model"] == "probe-backup"  # skipped while cooling down

    probes_run()

    health = ModelHealth.objects.get(model=primary)
    assert (health.state, health.consecutive_failures) == ("healthy", 0)
    assert health.last_probe_at is not None
    assert hub.chat().json()["model"] == "probe-primary"  # back before its cooldown ended


def test_reasoning_model_probe_sends_a_small_max_completion_tokens(hub, sim):
    model = hub.model("probe-gpt-5", "openai", max_tokens_param="max_completion_tokens", supports_temperature=False)
    hub.route("r", [model])

    [result] = probes_run()

    [call] = sim.calls_for("probe-gpt-5")
    assert result.outcome == "ok"
    assert call.body["max_completion_tokens"] == 16 and "max_tokens" not in call.body
    assert "temperature" not in call.body


def test_model_probed_recently_is_not_probed_again(hub, sim):
    model = hub.model("probe-once", "google")
    hub.route("r", [model])

    first, second = probes_run(), probes_run()

    assert [r.outcome for r in first] == ["ok"]
    assert [r.outcome for r in second] == ["skipped"]
    assert len(sim.calls_for("probe-once")) == 1


def test_model_whose_key_is_unset_is_skipped_without_a_call(hub, sim, monkeypatch):
    model = hub.model("probe-keyless", "openai")
    hub.route("r", [model])
    monkeypatch.delenv("SIM_TEST_KEY")

    [result] = probes_run()

    assert result.outcome == "skipped" and "SIM_TEST_KEY" in result.detail
    assert sim.calls == []


def test_probe_models_task_counts_outcomes(hub, sim):
    good, bad = hub.model("probe-good", "anthropic"), hub.model("probe-bad", "openai_compatible")
    hub.route("r", [good, bad])
    sim.set_fault("probe-bad", status=429, retry_after=30)

    counts = tasks.probe_models.apply().get()

    assert counts == {"ok": 1, "rate_limited": 1}


def test_probemodels_command_prints_a_table(hub, sim, capsys):
    hub.route("r", [hub.model("probe-table", "google")])
    sim.set_fault("probe-table", status=500)

    call_command("probemodels")

    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["provider", "model", "outcome", "latency", "health", "detail"]
    assert "probe-table" in out and "cooling_down" in out
    assert "1 model(s): 0 ok, 1 failed, 0 skipped" in out


@pytest.fixture
def catalog_on_simulator(simulator, sim, monkeypatch):
    """The seeded catalog, its providers pointed at the simulator through the environment;
    its retirement dates cleared, so that the chains are the seeded ones whatever the day
    (routing puts successors in place of retired models: tests/test_lifecycle.py)."""
    AIModel.objects.update(retires_on=None)
    for name in ("ANTHROPIC", "OPENAI", "GOOGLE", "GROQ"):
        monkeypatch.setenv(f"{name}_API_KEY", "sim-test-key")
    for env, kind in (
        ("ANTHROPIC_BASE_URL", "anthropic"),
        ("OPENAI_BASE_URL", "openai"),
        ("GOOGLE_GEMINI_BASE_URL", "google"),
        ("GROQ_BASE_URL", "openai_compatible"),
    ):
        monkeypatch.setenv(env, simulator.base_url(kind))
    assert Provider.objects.filter(name="groq").exists()


def test_default_catalog_probe_round_makes_one_call_per_routed_model(catalog_on_simulator, sim):
    results = probes_run()

    routed = {
        "claude-sonnet-4-5-20250929",
        "claude-3-5-haiku-20241022",
        "gemini-1.5-flash-latest",
        "gpt-4o-mini",
        "llama-3.1-8b-instant",
        "llama-3.3-70b-versatile",
        "llama-3.1-70b-versatile",
        "mixtral-8x7b-32768",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",  # the hybrid-simple route's
        "gpt-5",
    }
    assert {r.model.model_id for r in results} == routed
    assert all(r.outcome == "ok" for r in results), [(r.model.model_id, r.detail) for r in results]
    assert sorted(c.model for c in sim.calls) == sorted(routed)  # 11 provider calls
    assert AIModel.objects.filter(enabled=True).count() > len(routed)
