"""The audit trail: every configuration change says who, when, what, before and after; a
route's previous chain can be restored from admin."""

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from modelhub import services
from modelhub.audit import Actor
from modelhub.models import ConfigChange, RouteEntry
from tests.factories import AIModelFactory, ProviderFactory, RouteFactory

pytestmark = pytest.mark.django_db


def changelist(name):
    return reverse(f"admin:modelhub_{name}_changelist")


def act(client, name, action, objects):
    response = client.post(
        changelist(name), {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True
    )
    return [str(m) for m in get_messages(response.wsgi_request)]


def route_form(route, **changes):
    """The route's change form as admin posts it, entries inline, with ``changes`` applied."""
    entries = list(route.entries.order_by("position"))
    data = {
        "name": route.name,
        "description": route.description,
        "strategy": route.strategy,
        "latency_budget_ms": "",
        "ttft_timeout_ms": "",
        "enabled": "on",
        "entries-TOTAL_FORMS": len(entries),
        "entries-INITIAL_FORMS": len(entries),
        "entries-MIN_NUM_FORMS": 0,
        "entries-MAX_NUM_FORMS": 1000,
    }
    for i, entry in enumerate(entries):
        data.update(
            {
                f"entries-{i}-id": entry.pk,
                f"entries-{i}-route": route.pk,
                f"entries-{i}-model": entry.model_id,
                f"entries-{i}-position": entry.position,
                f"entries-{i}-weight": entry.weight,
            }
        )
        if entry.enabled:
            data[f"entries-{i}-enabled"] = "on"
    data.update(changes)
    return data


def chain_ids(chain):
    return [(item["model"].split("/", 1)[1], item["enabled"]) for item in chain]


@pytest.fixture
def route():
    provider = ProviderFactory(name="audited")
    models = [AIModelFactory(provider=provider, model_id=f"m{i}") for i in range(3)]
    return RouteFactory(name="audited-route", chain=models)


def test_disabling_the_primary_in_the_route_form_is_recorded_with_the_chain(admin_client, admin_user, route):
    data = route_form(route)
    del data["entries-0-enabled"]
    assert admin_client.post(reverse("admin:modelhub_route_change", args=[route.pk]), data).status_code == 302
    change = ConfigChange.objects.get(target_type="route", action="change")
    assert (change.actor, change.source, change.route) == (admin_user.username, "admin", route.name)
    assert chain_ids(change.before["chain"]) == [("m0", True), ("m1", True), ("m2", True)]
    assert chain_ids(change.after["chain"]) == [("m0", False), ("m1", True), ("m2", True)]


def test_restore_action_puts_the_previous_chain_back_and_a_second_restore_undoes_it(admin_client, route):
    entry = RouteEntry.objects.get(route=route, model__model_id="m2")
    assert act(admin_client, "routeentry", "make_primary", [entry]) == [f"m2 is now primary of {route.name}."]
    messages = act(admin_client, "route", "restore_previous_chain", [route])
    assert messages == [f"Restored the previous chain of {route.name}: m0 → m1 → m2."]
    assert list(route.entries.order_by("position").values_list("model__model_id", flat=True)) == ["m0", "m1", "m2"]
    act(admin_client, "route", "restore_previous_chain", [route])
    assert route.entries.get(position=0).model.model_id == "m2"
    assert list(ConfigChange.objects.filter(route=route.name).values_list("action", flat=True)) == [
        "restore_chain",
        "restore_chain",
        "set_primary",
    ]


def test_restore_from_the_audit_list_uses_the_changes_route(admin_client, route):
    services.route_entry_set_enabled(entry=route.entries.get(position=0), enabled=False, by=Actor("someone", "api"))
    change = ConfigChange.objects.get(action="disable_entry")
    act(admin_client, "configchange", "restore_previous_chain", [change])
    assert route.entries.get(position=0).enabled is True


def test_restore_without_history_says_so(admin_client, route):
    assert act(admin_client, "route", "restore_previous_chain", [route]) == [
        f"No earlier chain of route '{route.name}' is recorded."
    ]


def test_restore_leaves_out_models_deleted_since(route):
    services.route_set_primary(route=route, model=route.entries.get(position=2).model, by=Actor("a", "api"))
    route.entries.get(model__model_id="m1").model.delete()
    chain = services.route_chain_restore(route=route, by=Actor("a", "api"))
    assert chain_ids(chain) == [("m0", True), ("m2", True)]


def test_model_disable_action_records_the_flag_before_and_after(admin_client, admin_user, route):
    model = route.entries.get(position=0).model
    act(admin_client, "aimodel", "disable", [model])
    change = ConfigChange.objects.get(target_type="aimodel")
    assert (change.action, change.actor, change.target) == ("disable", admin_user.username, "m0")
    assert (change.before, change.after) == ({"enabled": True}, {"enabled": False})


def test_provider_edit_records_changed_fields_and_never_a_key(admin_client, route, monkeypatch):
    provider = route.entries.first().model.provider
    monkeypatch.setenv(provider.api_key_env, "sk-very-secret-value")
    data = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": "",
        "api_key_env": provider.api_key_env,
        "timeout_seconds": "12",
        "enabled": "on",
    }
    assert admin_client.post(reverse("admin:modelhub_provider_change", args=[provider.pk]), data).status_code == 302
    change = ConfigChange.objects.get(target_type="provider")
    assert (change.before, change.after) == ({"timeout_seconds": 30.0}, {"timeout_seconds": 12.0})
    page = admin_client.get(changelist("configchange")).content.decode()
    assert "sk-very-secret-value" not in page + json.dumps([change.before, change.after])


def test_reset_health_records_the_cooldowns_it_ended(route):
    from tests.factories import ModelHealthFactory

    model = route.entries.get(position=0).model
    ModelHealthFactory(model=model, cooling_down=True)
    services.health_reset(models=[model], by=Actor("ops", "admin"))
    change = ConfigChange.objects.get(action="reset_health")
    assert change.before["m0"]["state"] == "cooling_down" and change.after == {"m0": {"state": "healthy"}}


def test_the_audit_list_is_read_only(admin_client, route):
    services.route_set_primary(route=route, model=route.entries.get(position=1).model, by=Actor("ops", "api"))
    page = admin_client.get(changelist("configchange")).content.decode()
    assert "set_primary" in page and "m1 → m0 → m2" in page
    assert admin_client.get(reverse("admin:modelhub_configchange_add")).status_code == 403
    change = ConfigChange.objects.get()
    assert admin_client.get(reverse("admin:modelhub_configchange_change", args=[change.pk])).status_code == 200


def test_route_admin_shows_the_override_in_force(admin_client, route, monkeypatch):
    monkeypatch.setenv("DEFAULT_AUDITED_ROUTE_MODEL", "m2")
    page = admin_client.get(changelist("route")).content.decode()
    assert "DEFAULT_AUDITED_ROUTE_MODEL=m2 (primary)" in page
    assert "m2 → m0 → m1" in page
