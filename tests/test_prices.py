"""Prices that stay true: the stored prices compared with the bundled genai-prices database.
A difference waits for an operator and, accepted, is an audited change every process sees
on its next request; dismissed, it is not raised again; with auto-apply it is applied at
once; a model the database does not know (or a zero stored price) is flagged; a second
check adds no row; and the check never touches the network."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from modelhub import prices, tasks
from modelhub.audit import Actor, Source
from modelhub.models import AIModel, ConfigChange, Provider
from modelhub.models.prices import PriceCheck
from modelhub.runtime import runtime
from tests.factories import AIModelFactory, ProviderFactory

D = Decimal
OPERATOR = Actor("ops", Source.ADMIN)


@pytest.fixture(autouse=True)
def _version_file_apart(settings, tmp_path):
    settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "versions")}


@pytest.fixture
def openai(db):
    """An OpenAI provider of our own (the seeded catalog is left as it is)."""
    return ProviderFactory(name="openai-test", kind=Provider.Kind.OPENAI)


@pytest.fixture
def mini(openai):
    """gpt-4o-mini stored at $0.20 / $0.80; the database says $0.15 / $0.60."""
    return AIModelFactory(
        provider=openai, model_id="gpt-4o-mini", input_price_per_mtok=D("0.2"), output_price_per_mtok=D("0.8")
    )


def check(*models, **options) -> prices.PriceReport:
    return prices.prices_check(models=AIModel.objects.filter(pk__in=[m.pk for m in models]), **options)


def pending(model) -> PriceCheck:
    return PriceCheck.objects.get(model=model, status=PriceCheck.Status.PENDING)


def test_a_difference_waits_with_both_prices_and_leaves_the_model_alone(mini):
    report = check(mini)

    row = pending(mini)
    assert report.pending == ["openai-test/gpt-4o-mini"] and not report.applied
    assert (row.kind, row.stored_input, row.stored_output) == ("difference", D("0.2"), D("0.8"))
    assert (row.found_input, row.found_output) == (D("0.15"), D("0.6"))
    assert row.source.startswith("genai-prices 0.2.3 openai/gpt-4o-mini")
    mini.refresh_from_db()
    assert mini.input_price_per_mtok == D("0.2") and not ConfigChange.objects.filter(action="price update").exists()


def test_accepting_applies_it_audited_and_every_process_costs_with_it(mini):
    check(mini)
    before = async_to_sync(runtime().routing.current)()
    assert before.models[f"openai-test/{mini.model_id}"].input_price_per_mtok == D("0.2")

    prices.price_apply(pending(mini), actor=OPERATOR)

    mini.refresh_from_db()
    assert (mini.input_price_per_mtok, mini.output_price_per_mtok) == (D("0.15"), D("0.6"))
    row = PriceCheck.objects.get(model=mini)
    assert (row.status, row.resolved_by) == ("applied", "ops") and row.resolved_at is not None
    change = ConfigChange.objects.get(action="price update")
    assert (change.actor, change.source, change.target_type, change.target) == (
        "ops",
        "admin",
        "aimodel",
        "gpt-4o-mini",
    )
    assert change.before == {"input_price_per_mtok": "0.200000", "output_price_per_mtok": "0.800000"}
    assert change.after == {"input_price_per_mtok": "0.150000", "output_price_per_mtok": "0.600000"}
    after = async_to_sync(runtime().routing.current)()
    assert after.version != before.version
    assert after.models[f"openai-test/{mini.model_id}"].input_price_per_mtok == D("0.15")
    assert check(mini).confirmed == ["openai-test/gpt-4o-mini"]


def test_a_decided_check_cannot_be_decided_again(mini):
    check(mini)
    row = pending(mini)
    prices.price_dismiss(row, actor=OPERATOR)

    with pytest.raises(prices.PriceCheckError, match="already"):
        prices.price_apply(row, actor=OPERATOR)
    mini.refresh_from_db()
    assert mini.input_price_per_mtok == D("0.2")


def test_a_dismissed_difference_is_not_raised_again_until_the_database_says_otherwise(mini):
    check(mini)
    prices.price_dismiss(pending(mini), actor=OPERATOR)

    report = check(mini)

    assert report.dismissed_before == ["openai-test/gpt-4o-mini"] and not report.pending
    assert list(PriceCheck.objects.filter(model=mini).values_list("status", flat=True)) == ["dismissed"]
    mini.refresh_from_db()
    assert mini.input_price_per_mtok == D("0.2") and not ConfigChange.objects.filter(action="price update").exists()

    AIModel.objects.filter(pk=mini.pk).update(input_price_per_mtok=D("0.3"))  # another difference
    assert check(mini).pending == ["openai-test/gpt-4o-mini"]
    assert pending(mini).stored_input == D("0.3")


def test_auto_apply_applies_differences_as_the_system(mini, settings):
    settings.MODELHUB = {**settings.MODELHUB, "PRICES_AUTO_APPLY": True}

    report = check(mini)

    assert report.applied == ["openai-test/gpt-4o-mini"] and not report.pending
    mini.refresh_from_db()
    assert (mini.input_price_per_mtok, mini.output_price_per_mtok) == (D("0.15"), D("0.6"))
    change = ConfigChange.objects.get(action="price update")
    assert (change.actor, change.source) == ("price check", "system")
    assert PriceCheck.objects.get(model=mini).status == "applied"


def test_without_the_setting_nothing_is_applied(mini, settings):
    settings.MODELHUB = {k: v for k, v in settings.MODELHUB.items() if k != "PRICES_AUTO_APPLY"}

    assert check(mini).pending == ["openai-test/gpt-4o-mini"]


def test_models_with_no_known_price_are_flagged(openai):
    lab = ProviderFactory(name="mylab", base_url="http://10.1.2.3:8000/v1")  # OpenAI-compatible, unknown
    local = AIModelFactory(provider=lab, model_id="local-llm", input_price_per_mtok=0, output_price_per_mtok=0)
    invented = AIModelFactory(provider=openai, model_id="gpt-imaginary-9")
    unpriced = AIModelFactory(provider=openai, model_id="gpt-4o", input_price_per_mtok=0, output_price_per_mtok=0)

    report = check(local, invented, unpriced)

    assert sorted(report.unknown) == ["mylab/local-llm", "openai-test/gpt-imaginary-9"]
    local_row, invented_row = pending(local), pending(invented)
    assert (local_row.kind, local_row.found_input) == ("unknown", None)
    assert "does not know its provider" in local_row.note and "no price is stored" in local_row.note
    assert invented_row.kind == "unknown" and "does not know this model" in invented_row.note
    # A zero stored price the database knows better is a difference to accept.
    assert report.pending == ["openai-test/gpt-4o"]
    assert (pending(unpriced).found_input, pending(unpriced).found_output) == (D("2.5"), D("10"))
    with pytest.raises(prices.PriceCheckError, match="no price to apply"):
        prices.price_apply(local_row, actor=OPERATOR)


def test_openai_compatible_providers_are_placed_by_base_url_then_name(db):
    by_url = ProviderFactory(name="fast-llama", base_url="https://api.groq.com/openai/v1")
    by_name = ProviderFactory(name="groq-local", base_url="")
    by_name.name = "groq"  # not saved: the seeded "groq" exists; only the name matters here

    assert prices.database_provider(by_url).id == "groq"
    assert prices.database_provider(by_name).id == "groq"
    assert prices.database_provider(ProviderFactory(name="mylab")) is None


def test_a_second_check_adds_no_row(mini):
    first = check(mini)
    checked = pending(mini).checked_at

    second = check(mini)

    assert first.pending == second.pending == ["openai-test/gpt-4o-mini"]
    assert PriceCheck.objects.filter(model=mini).count() == 1
    assert pending(mini).checked_at > checked


def test_a_pending_difference_fixed_by_hand_is_closed(mini):
    check(mini)
    AIModel.objects.filter(pk=mini.pk).update(input_price_per_mtok=D("0.15"), output_price_per_mtok=D("0.6"))

    assert check(mini).confirmed == ["openai-test/gpt-4o-mini"]
    row = PriceCheck.objects.get(model=mini)
    assert (row.status, row.note) == ("dismissed", "No longer differs.")


def test_tiered_prices_compare_by_their_base_and_say_the_tiers(db):
    google = ProviderFactory(name="google-test", kind=Provider.Kind.GOOGLE)
    pro = AIModelFactory(provider=google, model_id="gemini-2.5-pro", input_price_per_mtok=1, output_price_per_mtok=5)

    check(pro)

    row = pending(pro)
    assert (row.found_input, row.found_output) == (D("1.25"), D("10"))
    assert "from 200,000 tokens" in row.note


def test_the_seeded_catalog_is_checked_whole(db):
    report = prices.prices_check()

    # Claude Haiku 3.5 is stored at the documents' $1 / $5; the database has $0.80 / $4.
    assert "anthropic/claude-3-5-haiku-20241022" in report.pending
    assert "openai/gpt-4o-mini" in report.confirmed and "anthropic/claude-sonnet-4-5-20250929" in report.confirmed
    assert PriceCheck.objects.filter(status="pending").count() == len(report.pending) + len(report.unknown)


def _offline(monkeypatch) -> list:
    """Every connection to anything but this machine fails, and is remembered."""
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else "unix"
        if host not in ("127.0.0.1", "::1", "localhost", "unix"):
            attempts.append(address)
            raise OSError("network unreachable (test)")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(OSError()))
    return attempts


def test_the_check_works_offline_from_the_bundled_data_only(mini, monkeypatch):
    import genai_prices.update_prices as updater
    from genai_prices import data_snapshot

    attempts = _offline(monkeypatch)
    prices.database.cache_clear()
    # A fetched snapshot elsewhere in the process (an UpdatePrices thread) is not what we read.
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", data_snapshot.DataSnapshot([], from_auto_update=True))

    report = check(mini)

    assert report.pending == ["openai-test/gpt-4o-mini"] and pending(mini).found_input == D("0.15")
    assert attempts == []
    assert updater._shared_updater.ref_count == 0  # no update thread was started


def test_accept_and_dismiss_from_admin(admin_client, mini, openai):
    other = AIModelFactory(provider=openai, model_id="gpt-5-nano", input_price_per_mtok=1, output_price_per_mtok=1)
    check(mini, other)
    url = reverse("admin:modelhub_pricecheck_changelist")
    assert "gpt-4o-mini" in admin_client.get(url).content.decode()

    accepted = admin_client.post(url, {"action": "accept", "_selected_action": [pending(mini).pk]}, follow=True)
    dismissed = admin_client.post(url, {"action": "dismiss", "_selected_action": [pending(other).pk]}, follow=True)

    assert "Applied: gpt-4o-mini." in [str(m) for m in get_messages(accepted.wsgi_request)]
    assert "Dismissed: gpt-5-nano." in [str(m) for m in get_messages(dismissed.wsgi_request)]
    mini.refresh_from_db(), other.refresh_from_db()
    assert mini.input_price_per_mtok == D("0.15") and other.input_price_per_mtok == 1
    change = ConfigChange.objects.get(action="price update")
    assert (change.actor, change.source) == ("admin", "admin")


def test_check_prices_now_from_the_model_list(admin_client, mini):
    url = reverse("admin:modelhub_aimodel_changelist")

    response = admin_client.post(url, {"action": "check_prices_now", "_selected_action": [mini.pk]}, follow=True)

    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("1 pending" in t for t in texts), texts
    assert pending(mini).found_input == D("0.15")


def test_the_command_and_the_daily_task(mini, capsys):
    call_command("checkprices")
    out = capsys.readouterr().out
    assert "differ (pending): openai-test/gpt-4o-mini" in out and "genai-prices 0.2.3:" in out

    result = tasks.prices_check.apply().get()  # as a worker runs it

    assert "openai-test/gpt-4o-mini" in result["pending"]
    assert PriceCheck.objects.filter(model=mini).count() == 1
    task = PeriodicTask.objects.get(name="modelhub.tasks.prices_check")
    assert task.task == "modelhub.tasks.prices_check" and task.crontab.hour == "0" and task.enabled
