"""Base URLs typed into admin cannot point the server at internal services (SSRF)."""

import pytest
from django.core.exceptions import ValidationError

from modelhub.providers.urls import base_url_resolve, base_url_validate
from tests.providers.test_transport import PUBLIC, ScriptedResolver, dns  # noqa: F401 - fixtures


@pytest.fixture
def strict(settings):
    settings.MODELHUB = {
        **settings.MODELHUB,
        "ALLOW_PRIVATE_BASE_URLS": False,
        "BASE_URL_ALLOWLIST": ["ollama.internal"],
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/v1",
        "https://127.1/v1",
        "https://2130706433/v1",
        "https://0x7f000001/v1",
        "https://[::1]/v1",
        "https://[::ffff:127.0.0.1]/v1",
        "https://localhost/v1",
        "https://10.0.0.5/v1",
        "https://169.254.169.254/latest",
        "https://192.168.1.1/",
        "https://api.openai.com@127.0.0.1/",
        "http://8.8.8.8/v1",
        "ftp://8.8.8.8/",
        "https:///v1",
        "https://no-such-host.invalid/v1",
    ],
)
def test_private_loopback_and_tricky_spellings_are_refused(strict, url):
    with pytest.raises(ValidationError):
        base_url_validate(url=url)


@pytest.mark.parametrize("url", ["", "https://8.8.8.8/v1", "http://ollama.internal:11434/v1"])
def test_public_https_blank_and_allowlisted_hosts_pass(strict, url):
    base_url_validate(url=url)


@pytest.mark.parametrize("url", ["https://api.example:99999/v1", "https://[::1/v1", "https://api.example:port/v1"])
def test_a_malformed_url_is_a_validation_error_not_a_crash(strict, url):
    with pytest.raises(ValidationError, match="not a valid URL"):
        base_url_validate(url=url)


@pytest.mark.parametrize(("answer", "refused"), [(PUBLIC, False), ("10.0.0.5", True), ("::ffff:127.0.0.1", True)])
def test_the_check_looks_the_host_up_through_the_connections_resolver(strict, dns, answer, refused):
    dns(answer)
    if refused:
        with pytest.raises(ValidationError, match="private, loopback or reserved"):
            base_url_validate(url="https://models.example/v1")
    else:
        base_url_validate(url="https://models.example/v1")
    assert ScriptedResolver.lookups == ["models.example"]


def test_embedded_default_accepts_the_loopback_simulator(settings):
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": True}
    base_url_validate(url="http://127.0.0.1:8900/openai/v1")


def test_blank_first_party_base_url_takes_the_sdk_variable(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic")
    assert base_url_resolve(name="anthropic", kind="anthropic", base_url="") == "http://127.0.0.1:9/anthropic"
    assert base_url_resolve(name="anthropic", kind="anthropic", base_url="https://x.example") == "https://x.example"


def test_compatible_provider_variable_wins_over_the_stored_url(monkeypatch):
    monkeypatch.setenv("GROQ_BASE_URL", "http://127.0.0.1:9/compat/v1")
    assert (
        base_url_resolve(name="groq", kind="openai_compatible", base_url="https://api.groq.com/openai/v1")
        == "http://127.0.0.1:9/compat/v1"
    )
    monkeypatch.delenv("GROQ_BASE_URL")
    assert (
        base_url_resolve(name="groq", kind="openai_compatible", base_url="https://api.groq.com/openai/v1")
        == "https://api.groq.com/openai/v1"
    )


@pytest.mark.django_db
def test_admin_refuses_a_loopback_base_url(strict, admin_client):
    from modelhub.models import Provider

    response = admin_client.post(
        "/admin/modelhub/provider/add/",
        {
            "name": "sneaky",
            "kind": "openai_compatible",
            "base_url": "https://127.1/v1",
            "api_key_env": "SNEAKY_KEY",
            "timeout_seconds": "30",
            "enabled": "on",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "private, loopback or reserved" in response.content.decode()
    assert not Provider.objects.filter(name="sneaky").exists()
