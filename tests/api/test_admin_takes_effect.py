"""A change made in admin is obeyed by the very next chat request, with no restart."""

import pytest

from modelhub.models import RouteEntry


@pytest.fixture
def chain(hub):
    primary, fallback = hub.model("primary-m", "anthropic"), hub.model("fallback-m", "google")
    hub.route("pam", [primary, fallback])
    assert hub.chat().json()["model"] == "primary-m"  # the snapshot is warm before the change
    return primary, fallback


def _action(admin_client, url, action, pks):
    response = admin_client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})
    assert response.status_code == 302


def test_disabling_a_model_in_admin_moves_the_next_request_to_the_fallback(hub, chain, admin_client):
    primary, _ = chain
    _action(admin_client, "/admin/modelhub/aimodel/", "disable", [primary.pk])
    body = hub.chat().json()
    assert (body["model"], body["source"]) == ("fallback-m", "primary")


def test_make_primary_in_admin_is_obeyed_next_request(hub, chain, admin_client):
    _, fallback = chain
    entry = RouteEntry.objects.get(model=fallback)
    _action(admin_client, "/admin/modelhub/routeentry/", "make_primary", [entry.pk])
    body = hub.chat().json()
    assert (body["model"], body["source"]) == ("fallback-m", "primary")


def test_disabling_the_route_entry_in_admin_is_obeyed_next_request(hub, chain, admin_client):
    primary, _ = chain
    entry = RouteEntry.objects.get(model=primary)
    _action(admin_client, "/admin/modelhub/routeentry/", "disable", [entry.pk])
    assert hub.chat().json()["model"] == "fallback-m"


def test_reset_health_in_admin_brings_a_model_back_next_request(hub, sim, chain, admin_client):
    primary, _ = chain
    sim.set_fault("primary-m", status=500, times=1)
    assert hub.chat().json()["model"] == "fallback-m"
    assert hub.chat().json()["model"] == "fallback-m"  # cooling down
    _action(admin_client, "/admin/modelhub/modelhealth/", "reset_health", [primary.health.pk])
    assert hub.chat().json()["model"] == "primary-m"
