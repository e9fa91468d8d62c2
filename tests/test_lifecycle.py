"""Model lifecycle: the seeded dates, the state of a model on a day, the chain routing walks
once a model is retired, the deploy check, the alert, and discovery's dates and proposals."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.checks import run_checks

from modelhub import tasks
from modelhub.alerts import LIFECYCLE_METRIC, alerts_evaluate
from modelhub.discovery import models_discover
from modelhub.lifecycle import (
    ACTIVE,
    DEPRECATED,
    RETIRED,
    RETIRING_SOON,
    lifecycle_state,
    model_family,
    substitute,
    successor_propose,
)
from modelhub.models import AIModel, Alert, AlertRule, ConfigChange, Route
from modelhub.providers.base import ModelSpec, ProviderSpec
from modelhub.providers.retirements import openai_doc_days, sdk_retirements
from tests.factories import AIModelFactory, ProviderFactory, RouteFactory

TODAY = date(2026, 12, 1)
PROVIDER = ProviderSpec("anthropic", "anthropic", None, "ANTHROPIC_API_KEY", None, 30.0)


def spec(pk, model_id, *, retires_on=None, successor_pk=None, deprecated_on=None) -> ModelSpec:
    return ModelSpec(
        pk,
        model_id,
        model_id,
        PROVIDER,
        200_000,
        64_000,
        Decimal(3),
        Decimal(15),
        retires_on=retires_on,
        successor_pk=successor_pk,
        deprecated_on=deprecated_on,
    )


def ids(chain):
    return [model.model_id for model in chain]


# -- the seeded catalog (migration 0012) --


def _seeded(model_id):
    return AIModel.objects.select_related("successor").get(
        provider__name__in=["anthropic", "openai", "google", "groq"], model_id=model_id
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model_id, retires_on, successor",
    [
        ("claude-sonnet-4-5-20250929", date(2026, 11, 30), "claude-sonnet-4-6"),  # the pam primary
        ("claude-3-5-haiku-20241022", date(2026, 2, 19), "claude-haiku-4-5-20251001"),
        ("claude-3-7-sonnet-20250219", date(2026, 2, 19), "claude-sonnet-4-6"),
        ("claude-opus-4-20250514", date(2026, 6, 15), "claude-opus-4-6"),
        ("gemini-1.5-flash-latest", date(2025, 9, 24), "gemini-2.5-flash"),
        ("gemini-1.5-pro-latest", date(2025, 9, 24), "gemini-2.5-pro"),
        ("gpt-5", date(2026, 12, 11), None),
        ("gpt-4o-mini", date(2027, 1, 14), None),
        ("mixtral-8x7b-32768", date(2025, 3, 20), "llama-3.3-70b-versatile"),
        ("gemini-2.5-flash", None, None),  # no published date known: left blank
        ("llama-3.1-8b-instant", None, None),
    ],
)
def test_catalog_models_carry_the_published_retirement_dates(model_id, retires_on, successor):
    model = _seeded(model_id)

    assert model.retires_on == retires_on
    assert (model.successor.model_id if model.successor else None) == successor
    assert model.deprecated_on is None  # no source gives the day a deprecation was announced
    assert bool(model.lifecycle_note) == (retires_on is not None)


@pytest.mark.django_db
def test_the_seeded_claude_dates_are_the_installed_sdks():
    table = sdk_retirements("anthropic").days
    seeded = AIModel.objects.filter(provider__name="anthropic", retires_on__isnull=False)

    assert {m.model_id: m.retires_on for m in seeded} == {m.model_id: table[m.model_id] for m in seeded}
    assert "DEPRECATED_MODELS" in _seeded("claude-sonnet-4-5-20250929").lifecycle_note


@pytest.mark.django_db
def test_the_never_listed_haiku_id_is_flagged_and_mapped_to_the_real_one():
    fake = _seeded("claude-haiku-4-5-20250514")

    assert fake.lifecycle_note.startswith("Never listed by Anthropic")
    assert fake.successor.model_id == "claude-haiku-4-5-20251001"
    assert fake.retires_on is None  # not retired by a date: the mapping is for the operator and for routing's successor


@pytest.mark.django_db
def test_missing_successors_are_added_with_prices_windows_and_capabilities():
    sonnet, haiku = _seeded("claude-sonnet-4-6"), _seeded("claude-haiku-4-5-20251001")

    assert (sonnet.input_price_per_mtok, sonnet.output_price_per_mtok, sonnet.context_window) == (3, 15, 1_000_000)
    assert (haiku.input_price_per_mtok, haiku.output_price_per_mtok, haiku.max_output_tokens) == (1, 5, 64_000)
    assert sonnet.enabled and sonnet.supports_vision and sonnet.params_unsupported == ["top_p"]
    assert sonnet.retires_on is None and sonnet.successor is None


# -- the state of a model on a day --


@pytest.mark.parametrize(
    "retires_on, deprecated_on, state",
    [
        (None, None, ACTIVE),
        (TODAY + timedelta(days=31), None, DEPRECATED),  # an announced retirement is a deprecation
        (None, TODAY - timedelta(days=1), DEPRECATED),
        (None, TODAY + timedelta(days=1), ACTIVE),  # deprecated from tomorrow
        (TODAY + timedelta(days=30), None, RETIRING_SOON),
        (TODAY + timedelta(days=1), TODAY - timedelta(days=90), RETIRING_SOON),
        (TODAY, None, RETIRED),  # gone on its end-of-life day
        (TODAY - timedelta(days=300), None, RETIRED),
    ],
)
def test_lifecycle_state(retires_on, deprecated_on, state):
    assert lifecycle_state(spec(1, "m", retires_on=retires_on, deprecated_on=deprecated_on), TODAY) == state


# -- substitute: the chain routing walks --

RETIRED_ON = date(2026, 11, 30)
SONNET_45 = spec(1, "claude-sonnet-4-5-20250929", retires_on=RETIRED_ON, successor_pk=2)
SONNET_46 = spec(2, "claude-sonnet-4-6")
HAIKU_35 = spec(3, "claude-3-5-haiku-20241022", retires_on=date(2026, 2, 19), successor_pk=4)
HAIKU_45 = spec(4, "claude-haiku-4-5-20251001")
GPT = spec(5, "gpt-4o-mini", retires_on=date(2027, 1, 14))
ENABLED = {m.pk: m for m in (SONNET_45, SONNET_46, HAIKU_35, HAIKU_45, GPT)}


def test_a_chain_without_retired_models_is_returned_as_it_is():
    chain = (SONNET_46, GPT)

    result, reasons = substitute(chain, ENABLED, TODAY)

    assert result is chain and reasons == ()


def test_a_retired_model_is_replaced_by_its_successor_in_its_place():
    result, reasons = substitute((SONNET_45, HAIKU_35, GPT), ENABLED, TODAY)

    assert ids(result) == ["claude-sonnet-4-6", "claude-haiku-4-5-20251001", "gpt-4o-mini"]
    assert reasons == (
        ("claude-sonnet-4-5-20250929", "retired on 2026-11-30; claude-sonnet-4-6 in its place"),
        ("claude-3-5-haiku-20241022", "retired on 2026-02-19; claude-haiku-4-5-20251001 in its place"),
    )


def test_the_day_before_retirement_nothing_is_replaced():
    result, reasons = substitute((SONNET_45, GPT), ENABLED, RETIRED_ON - timedelta(days=1))

    assert ids(result) == ["claude-sonnet-4-5-20250929", "gpt-4o-mini"] and reasons == ()


def test_a_successor_that_is_not_enabled_drops_the_retired_model():
    enabled = {pk: m for pk, m in ENABLED.items() if pk != SONNET_46.pk}

    result, reasons = substitute((SONNET_45, GPT), enabled, TODAY)

    assert ids(result) == ["gpt-4o-mini"]
    assert reasons == (("claude-sonnet-4-5-20250929", "retired on 2026-11-30; its successor is not enabled"),)


def test_a_successor_already_in_the_chain_is_not_tried_twice():
    result, reasons = substitute((SONNET_45, GPT, SONNET_46), ENABLED, TODAY)

    assert ids(result) == ["gpt-4o-mini", "claude-sonnet-4-6"]
    assert reasons[0][1] == "retired on 2026-11-30; claude-sonnet-4-6 is already in the chain"


def test_two_retired_models_with_one_successor_give_it_one_place():
    sonnet_37 = spec(6, "claude-3-7-sonnet-20250219", retires_on=date(2026, 2, 19), successor_pk=2)

    result, reasons = substitute((SONNET_45, sonnet_37), {**ENABLED, 6: sonnet_37}, TODAY)

    assert ids(result) == ["claude-sonnet-4-6"]
    assert [why for _, why in reasons] == [
        "retired on 2026-11-30; claude-sonnet-4-6 in its place",
        "retired on 2026-02-19; claude-sonnet-4-6 is already in the chain",
    ]


def test_a_retired_successor_hands_on_to_its_own_successor():
    opus_4 = spec(7, "claude-opus-4-20250514", retires_on=date(2026, 6, 15), successor_pk=8)
    opus_41 = spec(8, "claude-opus-4-1", retires_on=date(2026, 8, 1), successor_pk=9)
    opus_46 = spec(9, "claude-opus-4-6")

    result, reasons = substitute((opus_4,), {7: opus_4, 8: opus_41, 9: opus_46}, TODAY)

    assert ids(result) == ["claude-opus-4-6"]
    assert reasons == (("claude-opus-4-20250514", "retired on 2026-06-15; claude-opus-4-6 in its place"),)


def test_no_successor_and_a_cycle_drop_the_model():
    alone = spec(10, "gemini-1.5-flash-latest", retires_on=date(2025, 9, 24))
    a = spec(11, "a", retires_on=date(2026, 1, 1), successor_pk=12)
    b = spec(12, "b", retires_on=date(2026, 1, 1), successor_pk=11)

    result, reasons = substitute((alone, a, HAIKU_45), {10: alone, 11: a, 12: b, 4: HAIKU_45}, TODAY)

    assert ids(result) == ["claude-haiku-4-5-20251001"]
    assert [why for _, why in reasons] == [
        "retired on 2025-09-24; no successor set",
        "retired on 2026-01-01; its successors form a cycle",
    ]


# -- deploy check and alerts: models of enabled routes retiring or retired --


@pytest.fixture
def at_risk(db, monkeypatch):
    """The seeded routes switched off; a route using a model retired yesterday (with an
    enabled successor), one retiring in 10 days (none) and one retiring in 60 days."""
    monkeypatch.setenv("PAM_TEST_LIFECYCLE_KEY", "set")
    Route.objects.update(enabled=False)
    provider = ProviderFactory(name="lc", api_key_env="PAM_TEST_LIFECYCLE_KEY")
    today = datetime.now(UTC).date()
    heir = AIModelFactory(provider=provider, model_id="lc-heir")
    gone = AIModelFactory(provider=provider, model_id="lc-gone", retires_on=today - timedelta(days=1), successor=heir)
    soon = AIModelFactory(provider=provider, model_id="lc-soon", retires_on=today + timedelta(days=10))
    later = AIModelFactory(provider=provider, model_id="lc-later", retires_on=today + timedelta(days=60))
    RouteFactory(name="lc-main", chain=[gone, soon, later])
    RouteFactory(name="lc-other", chain=[soon])
    RouteFactory(name="lc-off", chain=[gone], enabled=False)
    return dict(gone=gone, soon=soon, later=later, today=today)


def _lifecycle_warnings():
    return [m for m in run_checks(include_deployment_checks=True) if m.id == "modelhub.W005"]


def test_deploy_check_warns_for_each_enabled_route_using_a_retiring_or_retired_model(at_risk):
    today = at_risk["today"]

    warnings = _lifecycle_warnings()

    soon = f"lc-soon, which retires on {today + timedelta(days=10)} (in 10 days): no successor set."
    assert [(w.level, w.msg) for w in warnings] == [
        (30, f"Route 'lc-main' uses lc-gone, retired on {today - timedelta(days=1)}: lc-heir in its place."),
        (30, f"Route 'lc-main' uses {soon}"),
        (30, f"Route 'lc-other' uses {soon}"),
    ]
    assert "successor" in warnings[0].hint


def test_deploy_check_is_quiet_when_no_route_uses_such_a_model(at_risk):
    Route.objects.filter(name__startswith="lc-").update(enabled=False)

    assert _lifecycle_warnings() == []


@pytest.fixture
def inbox(settings):
    settings.MODELHUB = {**settings.MODELHUB, "ALERT_EMAILS": ["ops@example.com"]}


def _lifecycle_alerts():
    return Alert.objects.filter(rule__metric=LIFECYCLE_METRIC).order_by("rule__name")


def test_alert_is_raised_once_per_model_and_state(at_risk, inbox):
    today = at_risk["today"]

    alerts_evaluate()
    alerts_evaluate()
    tasks.evaluate_alerts.apply().get()

    alerts = list(_lifecycle_alerts())
    assert [(a.rule.name, a.period, a.value, a.threshold) for a in alerts] == [
        ("Model lifecycle: lc/lc-gone", today - timedelta(days=1), -1, 30),
        ("Model lifecycle: lc/lc-soon", today + timedelta(days=10) - timedelta(days=30), 10, 30),
    ]
    assert (
        alerts[0].message
        == f"lc-gone (lc) retired on {today - timedelta(days=1)}, used by route lc-main: lc-heir in its place."
    )
    assert alerts[1].message.endswith("used by route lc-main, lc-other: no successor set.")
    assert len(mail.outbox) == 2 and mail.outbox[0].to == ["ops@example.com"]


def test_a_new_state_is_a_new_alert_and_a_disabled_rule_none(at_risk, inbox):
    alerts_evaluate()
    soon = at_risk["soon"]
    soon.retires_on = at_risk["today"]  # now retired
    soon.save()
    AlertRule.objects.filter(name="Model lifecycle: lc/lc-gone").update(enabled=False)
    Alert.objects.filter(rule__name="Model lifecycle: lc/lc-gone").delete()

    new = [a for a in alerts_evaluate() if a.rule.metric == LIFECYCLE_METRIC]

    assert [(a.rule.name, a.period, a.value) for a in new] == [("Model lifecycle: lc/lc-soon", at_risk["today"], 0)]
    assert _lifecycle_alerts().count() == 2  # lc-soon retiring, then retired; lc-gone's rule is off


# -- discovery: dates from the SDKs, successors proposed from the listing --


def test_anthropic_sdk_table_is_read_as_days():
    days = sdk_retirements("anthropic").days

    assert days["claude-sonnet-4-5-20250929"] == date(2026, 11, 30)
    assert days["claude-opus-4-20250514"] == date(2026, 6, 15)
    assert sdk_retirements("google").days == {} and sdk_retirements("openai_compatible").days == {}


def test_openai_sdk_shutdown_dates_are_read_from_its_chat_model_documentation():
    assert sdk_retirements("openai").days["gpt-5"] == date(2026, 12, 11)
    source = '''ChatModel = Literal["a"]
"""Deprecated values:

- "gpt-x", "gpt-x-2025": Announced shutdown
  date: 2026-03-26. See the deprecations page.
- "gpt-y": Not a supported model ID. Retained for SDK compatibility.
"""
'''
    assert openai_doc_days(source) == {"gpt-x": date(2026, 3, 26), "gpt-x-2025": date(2026, 3, 26)}


@pytest.mark.parametrize(
    "model_id, listed, proposed",
    [
        ("claude-sonnet-4-5-20250929", ["claude-sonnet-4-6", "claude-sonnet-5", "claude-opus-4-6"], "claude-sonnet-5"),
        ("claude-3-7-sonnet-20250219", ["claude-sonnet-4-6", "claude-3-5-haiku-20241022"], "claude-sonnet-4-6"),
        ("claude-haiku-4-5-20250514", ["claude-haiku-4-5-20251001", "claude-haiku-4-5"], "claude-haiku-4-5-20251001"),
        (
            "gemini-1.5-flash-latest",
            ["gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-flash-preview"],
            "gemini-2.5-flash",
        ),
        ("llama-3.1-70b-versatile", ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"], "llama-3.3-70b-versatile"),
        ("gpt-4o-mini", ["gpt-4o", "gpt-5-mini"], None),  # another family
        ("claude-sonnet-4-6", ["claude-sonnet-4-5-20250929", "claude-sonnet-4-6"], None),  # nothing newer
    ],
)
def test_successor_proposal_is_the_newest_of_the_same_family(model_id, listed, proposed):
    assert successor_propose(model_id, listed) == proposed


def test_model_family_reads_words_version_and_stamp():
    family = model_family("gpt-5.4-mini-2026-03-17")
    assert (family.words, family.version, family.stamp) == (("gpt", "mini"), (5, 4), "20260317")
    assert model_family("claude-3-7-sonnet-20250219").words == model_family("claude-sonnet-4-6").words


@pytest.mark.django_db
def test_discovery_refreshes_dates_from_the_sdk_and_proposes_a_listed_successor(hub, sim):
    sonnet = hub.model("claude-sonnet-4-5-20250929", "anthropic")
    sim.listed_models["anthropic"].append("claude-sonnet-4-6")

    [report] = [r for r in models_discover() if r.provider == "sim-anthropic"]

    sonnet.refresh_from_db()
    assert "claude-sonnet-4-5-20250929: - -> 2026-11-30" in report.retirements
    assert "claude-sonnet-4-5-20250929 -> claude-sonnet-4-6" in report.proposals
    assert sonnet.retires_on == date(2026, 11, 30)
    assert sonnet.lifecycle_note.startswith("Discovery proposes claude-sonnet-4-6 as successor (sim-anthropic lists it")
    assert "DEPRECATED_MODELS" in sonnet.lifecycle_note
    assert sonnet.successor is None  # a proposal: nothing is re-routed until the operator sets it
    change = ConfigChange.objects.get(action="lifecycle refresh", target="claude-sonnet-4-5-20250929")
    assert (change.actor, change.source, change.after["retires_on"]) == ("discovery", "system", "2026-11-30")


@pytest.mark.django_db
def test_discovery_again_moves_nothing_and_keeps_the_proposal(hub, sim):
    sonnet = hub.model("claude-sonnet-4-5-20250929", "anthropic")
    sim.listed_models["anthropic"].append("claude-sonnet-4-6")
    models_discover()
    note = AIModel.objects.get(pk=sonnet.pk).lifecycle_note

    [report] = [r for r in models_discover() if r.provider == "sim-anthropic"]

    assert report.retirements == []
    assert AIModel.objects.get(pk=sonnet.pk).lifecycle_note == note


@pytest.mark.django_db
def test_discovery_proposes_no_successor_that_is_retiring_itself(hub, sim):
    hub.model("claude-3-7-sonnet-20250219", "anthropic")  # retired 2026-02-19 by the SDK's table
    sim.listed_models["anthropic"] = ["claude-3-7-sonnet-20250219", "claude-sonnet-4-5-20250929"]

    [report] = [r for r in models_discover() if r.provider == "sim-anthropic"]

    assert report.proposals == []  # Sonnet 4.5 is newer, but the SDK says it retires too


@pytest.mark.django_db
def test_a_failed_listing_still_takes_the_sdks_dates(hub, sim):
    opus = hub.model("claude-opus-4-20250514", "anthropic")
    sim.valid_keys = {"another-key"}

    [report] = [r for r in models_discover() if r.provider == "sim-anthropic"]

    opus.refresh_from_db()
    assert report.error.startswith("auth") and report.proposals == []
    assert report.retirements == ["claude-opus-4-20250514: - -> 2026-06-15"]
    assert opus.retires_on == date(2026, 6, 15)
