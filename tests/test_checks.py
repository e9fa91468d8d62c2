"""System checks: a configuration the hub cannot obey stops start-up with a clear message."""

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import ProgrammingError

from modelhub.routing import snapshot
from tests.factories import AIModelFactory, ProviderFactory, RouteFactory

pytestmark = pytest.mark.django_db
SEEDED_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GROQ_API_KEY")


@pytest.fixture(autouse=True)
def seeded_keys_set(monkeypatch):
    for name in SEEDED_KEYS:
        monkeypatch.setenv(name, "set-for-the-test")


def modelhub_messages(deploy=True):
    """The hub's messages but the lifecycle warning: the seeded catalog uses retired models
    (modelhub.W005, tests/test_lifecycle.py); these tests are about overrides and keys."""
    messages = run_checks(include_deployment_checks=deploy)
    return [m for m in messages if m.id.startswith("modelhub.") and m.id != "modelhub.W005"]


def check_fails_with(*texts, deploy=False):
    options = {"deploy": True} if deploy else {}
    with pytest.raises(SystemCheckError) as failure:
        call_command("check", **options)
    for text in texts:
        assert text in str(failure.value)


def test_a_valid_configuration_passes():
    assert modelhub_messages() == []
    call_command("check", deploy=True)


def test_unknown_model_in_an_override_stops_start_up(monkeypatch):
    monkeypatch.setenv("FORCE_MODEL", "gpt-9")
    check_fails_with("modelhub.E001", "FORCE_MODEL=gpt-9 names no enabled model")


def test_unknown_pam_fallback_stops_start_up(monkeypatch):
    monkeypatch.setenv("PAM_FALLBACK_MODEL_2", "claude-9")
    check_fails_with("modelhub.E001", "PAM_FALLBACK_MODEL_2=claude-9")


def test_a_disabled_model_counts_as_unknown(monkeypatch):
    model = AIModelFactory(enabled=False)
    monkeypatch.setenv("DEFAULT_PAM_MODEL", model.model_id)
    check_fails_with("modelhub.E001", f"DEFAULT_PAM_MODEL={model.model_id} names no enabled model")


def test_no_toggle_true_for_a_route_that_uses_toggles_stops_start_up(monkeypatch):
    monkeypatch.setenv("PASS_1_USE_GPT5", "false")
    monkeypatch.setenv("PASS_1_USE_GPT5_MINI", "false")
    check_fails_with("modelhub.E002", "route 'pass_1' uses model toggles but none is true", "PASS_1_USE_GPT5_MINI")


def test_several_toggles_true_stop_start_up(monkeypatch):
    monkeypatch.setenv("PASS_05_USE_GEMINI_2_5_FLASH", "true")
    monkeypatch.setenv("PASS_05_USE_GPT5", "true")
    check_fails_with("modelhub.E003", "several model toggles true (PASS_05_USE_GEMINI_2_5_FLASH, PASS_05_USE_GPT5)")


def test_exactly_one_toggle_true_passes(monkeypatch):
    monkeypatch.setenv("PASS_05_USE_GEMINI_2_5_FLASH", "false")
    monkeypatch.setenv("PASS_05_USE_GPT5", "true")
    assert modelhub_messages() == []


@pytest.fixture
def keyless_route():
    provider = ProviderFactory(api_key_env="PAM_TEST_UNSET_KEY")
    model = AIModelFactory(provider=provider, model_id="keyless-model")
    return RouteFactory(name="keyless", chain=[model])


def test_unset_provider_key_of_a_model_in_use_is_an_error(keyless_route, settings):
    settings.DEBUG = False
    check_fails_with(
        "modelhub.E004",
        "PAM_TEST_UNSET_KEY is not set, but models in use need it: keyless-model (route keyless)",
        deploy=True,
    )


def test_unset_provider_key_is_a_warning_in_debug(keyless_route, settings):
    settings.DEBUG = True
    messages = modelhub_messages()
    assert [(m.id, m.level) for m in messages] == [("modelhub.W004", 30)]
    call_command("check", deploy=True)  # warnings do not stop start-up


def test_a_key_is_not_needed_by_a_disabled_route(keyless_route):
    keyless_route.enabled = False
    keyless_route.save()
    assert modelhub_messages() == []


def test_key_check_is_a_deployment_check_so_migrate_is_not_blocked(keyless_route):
    assert modelhub_messages(deploy=False) == []
    call_command("check")


def test_checks_are_quiet_before_the_tables_exist(monkeypatch):
    def no_tables(**kwargs):
        raise ProgrammingError('relation "modelhub_aimodel" does not exist')

    monkeypatch.setattr(snapshot, "snapshot_build", no_tables)
    monkeypatch.setenv("FORCE_MODEL", "gpt-9")
    assert modelhub_messages() == []


def test_start_up_refusal_is_worded_as_the_system_check(monkeypatch):
    from modelhub.checks import overrides_messages, startup_refusal

    monkeypatch.setenv("FORCE_MODEL", "gpt-9")
    [message] = overrides_messages()
    refusal = startup_refusal(process="web server")
    assert str(message) in refusal and "FORCE_MODEL=gpt-9 names no enabled model" in refusal
    assert "The web server does not start; set MODELHUB_START_DEGRADED=true" in refusal


def test_start_up_goes_on_degraded_when_told_to(monkeypatch, settings, caplog):
    from modelhub.checks import startup_refusal

    settings.MODELHUB = {**settings.MODELHUB, "START_DEGRADED": True}
    monkeypatch.setenv("FORCE_MODEL", "gpt-9")
    assert startup_refusal(process="web server") is None
    assert "web server starts degraded" in caplog.text


def test_a_valid_configuration_lets_start_up_go_on():
    from modelhub.checks import startup_refusal

    assert startup_refusal(process="web server") is None
