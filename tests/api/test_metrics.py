"""GET /api/v1/pam/metrics: today's figures per route and per model, for staff only."""

from decimal import Decimal

import pytest

from modelhub.services import api_key_create

URL = "/api/v1/pam/metrics"


@pytest.fixture
def traffic(hub, sim):
    primary, backup = hub.model("metrics-primary", "anthropic"), hub.model("metrics-backup", "openai")
    hub.route("pam", [primary, backup])
    hub.route("fast", [backup])
    hub.chat({"message": "Hi", "route": "pam"})
    sim.set_fault("metrics-primary", status=500, times=1)
    hub.chat({"message": "Hi", "route": "pam"})  # fails over to metrics-backup
    hub.chat({"message": "Hi", "route": "fast"})


def test_staff_session_sees_requests_failures_fallbacks_and_cost_per_route_and_model(traffic, admin_client):
    body = admin_client.get(URL).json()

    pam, fast = body["routes"]["pam"], body["routes"]["fast"]
    assert (pam["requests"], pam["attempts"], pam["failures"], pam["fallbacks"]) == (2, 3, 1, 1)
    assert (fast["requests"], fast["failures"], fast["fallbacks"]) == (1, 0, 0)
    primary = body["models"]["sim-anthropic/metrics-primary"]
    backup = body["models"]["sim-openai/metrics-backup"]
    assert (primary["requests"], primary["attempts"], primary["failures"]) == (1, 2, 1)
    assert (backup["requests"], backup["fallbacks"]) == (2, 1)
    assert body["totals"]["requests"] == 3
    assert pam["cost_today_usd"] > 0
    assert pam["avg_cost_per_request_usd"] == pytest.approx(pam["cost_today_usd"] / 2)
    assert body["probes"]["requests"] == 0


def test_cost_today_matches_the_ledger(traffic, admin_client):
    from modelhub.models import UsageRecord

    body = admin_client.get(URL).json()

    ledger = sum(UsageRecord.objects.values_list("cost_usd", flat=True), Decimal(0))
    assert Decimal(str(body["totals"]["cost_today_usd"])) == pytest.approx(ledger)


def test_anonymous_gets_401(client, db):
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_non_staff_key_gets_403(hub):
    response = hub.client.get(URL, headers={"Authorization": f"Bearer {hub.key}"})
    assert response.status_code == 403


def test_a_staff_users_key_is_accepted(hub, admin_user):
    _, secret = api_key_create(name="ops", user=admin_user)
    response = hub.client.get(URL, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.json()["totals"]["requests"] == 0
