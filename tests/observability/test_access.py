"""Who may read GET /metrics: a scraper with the metrics token from anywhere, anyone from an
allowed network (by default the loopback addresses); refusals are JSON (401 or 403)."""

from __future__ import annotations

import pytest

TOKEN = "scrape-token-for-tests"
OUTSIDE = "203.0.113.9"


@pytest.fixture
def metrics_settings(settings):
    def configure(*, token: str = "", networks: list[str] | None = None) -> None:
        networks = ["127.0.0.0/8", "::1/128"] if networks is None else networks
        settings.MODELHUB = {**settings.MODELHUB, "METRICS_TOKEN": token, "METRICS_ALLOWED_NETWORKS": networks}

    return configure


def _get(client, *, address: str = "127.0.0.1", token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/metrics", headers=headers, REMOTE_ADDR=address)


def _error(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_reads_the_metrics_by_default(db, client, metrics_settings, address):
    metrics_settings()
    response = _get(client, address=address)
    assert response.status_code == 200
    assert b"# TYPE modelhub_requests_total counter" in response.content


def test_elsewhere_without_a_token_configured_is_forbidden(db, client, metrics_settings):
    metrics_settings()
    error = _error(_get(client, address=OUTSIDE), 403)
    assert error["type"] == "permission_error"
    assert "MODELHUB_METRICS_ALLOWED_NETWORKS" in error["message"]
    # a bearer token means nothing while none is configured
    assert _get(client, address=OUTSIDE, token="anything").status_code == 403


def test_the_token_opens_the_metrics_from_anywhere(db, client, metrics_settings):
    metrics_settings(token=TOKEN)
    assert _get(client, address=OUTSIDE, token=TOKEN).status_code == 200


def test_elsewhere_without_the_token_is_asked_for_it(db, client, metrics_settings):
    metrics_settings(token=TOKEN)
    response = _get(client, address=OUTSIDE)
    error = _error(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"
    assert error["type"] == "authentication_error"
    assert "metrics token" in error["message"]


def test_a_wrong_token_is_refused_even_from_loopback(db, client, metrics_settings):
    metrics_settings(token=TOKEN)
    error = _error(_get(client, token="not-" + TOKEN), 401)
    assert error["message"] == "Invalid metrics token."
    assert _get(client).status_code == 200  # no token from loopback: the network rule


def test_networks_are_configurable_and_a_bad_entry_narrows_access(db, client, metrics_settings):
    metrics_settings(networks=["203.0.113.0/24", "not-a-network"])
    assert _get(client, address=OUTSIDE).status_code == 200
    assert _get(client, address="127.0.0.1").status_code == 403
    metrics_settings(networks=[])
    assert _get(client, address="127.0.0.1").status_code == 403


def test_an_address_that_is_none_is_refused(db, client, metrics_settings):
    metrics_settings()
    assert _get(client, address="").status_code == 403


def test_a_refusal_is_json_whatever_the_scraper_accepts(db, client, metrics_settings):
    metrics_settings()
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert _error(response, 403)["type"] == "permission_error"
