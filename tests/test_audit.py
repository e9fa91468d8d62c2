"""The audit trail: every configuration change says who, when, what, before and after; a
route's previous chain can be restored from admin."""

import json
import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from modelhub import services
from modelhub.audit import Actor
from modelhub.models import AlertRule, ApiKey, ConfigChange, RouteEntry
from tests.factories import AIModelFactory, ApiKeyFactory, ProviderFactory, RouteFactory

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
        "strong_share_target": route.strong_share_target,
        "classifier_config": "{}",
        "class_budgets_ms": "{}",
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


# --- keys, alert rules, schedules, model prices ------------------------------------------


def row_text(change):
    return json.dumps([change.actor, change.target, change.before, change.after])


def test_a_keys_life_is_recorded_and_its_secret_and_hash_never_are(admin_client, admin_user, route):
    other = RouteFactory(name="audited-other")
    response = admin_client.post(
        reverse("admin:modelhub_apikey_add"),
        {"name": "audited-key", "routes": [route.pk], "rpm_limit": "30", "daily_budget_usd": "2.5"},
        follow=True,
    )
    secret = next(re.search(r"pam_[A-Za-z0-9_-]+", m).group(0) for m in map(str, get_messages(response.wsgi_request)))
    key = ApiKey.objects.get(name="audited-key")
    edit = {"name": "audited-key", "is_active": "on", "routes": [other.pk], "rpm_limit": "60", "daily_budget_usd": "5"}
    assert admin_client.post(reverse("admin:modelhub_apikey_change", args=[key.pk]), edit).status_code == 302
    act(admin_client, "apikey", "deactivate", [key])

    add, edited, deactivated = ConfigChange.objects.filter(target_type="apikey").order_by("id")
    assert (add.action, add.actor, add.before) == ("add", admin_user.username, None)
    assert add.after == {
        "name": "audited-key",
        "prefix": key.prefix,
        "user": None,
        "is_active": True,
        "routes": ["audited-route"],
        "rpm_limit": 30,
        "daily_budget_usd": "2.500000",
        "expires_at": None,
        "previous_valid_until": None,
    }
    assert edited.action == "change"
    assert edited.before == {"routes": ["audited-route"], "rpm_limit": 30, "daily_budget_usd": "2.500000"}
    assert edited.after == {"routes": ["audited-other"], "rpm_limit": 60, "daily_budget_usd": "5.000000"}
    assert (deactivated.action, deactivated.before, deactivated.after) == (
        "deactivate",
        {"is_active": True},
        {"is_active": False},
    )
    for change in (add, edited, deactivated):
        assert secret not in row_text(change) and key.key_hash not in row_text(change)


def test_deleting_a_key_records_its_last_state_without_the_hash(admin_client):
    key = ApiKeyFactory(name="audited-doomed")
    response = admin_client.post(reverse("admin:modelhub_apikey_delete", args=[key.pk]), {"post": "yes"})
    assert response.status_code == 302 and not ApiKey.objects.filter(pk=key.pk).exists()
    change = ConfigChange.objects.get(target_type="apikey")
    assert (change.action, change.before["name"], change.after) == ("delete", "audited-doomed", None)
    assert key.key_hash not in row_text(change)


def test_alert_rule_edit_records_the_change_with_the_webhook_token_masked(admin_client, settings, monkeypatch):
    monkeypatch.setitem(settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS", True)
    rule = AlertRule.objects.create(name="audited-rule", metric=AlertRule.Metric.DAILY_COST, threshold=Decimal("10"))
    data = {
        "name": rule.name,
        "metric": rule.metric,
        "threshold": "25",
        "scope": "all",
        "target": "",
        "min_requests": "0",
        "emails": "",
        "webhook_url": "https://hooks.example.com/services/T0/very-secret-token",
        "enabled": "on",
    }
    assert admin_client.post(reverse("admin:modelhub_alertrule_change", args=[rule.pk]), data).status_code == 302
    change = ConfigChange.objects.get(target_type="alertrule")
    assert (change.action, change.target) == ("change", "audited-rule")
    assert set(change.after) == {"threshold", "webhook_url"}
    assert (change.before["threshold"], change.after["threshold"]) == ("10.000000000000", "25.000000000000")
    assert change.before["webhook_url"] == "" and change.after["webhook_url"].startswith("hooks.example.com/… #")
    assert "very-secret-token" not in row_text(change)


def periodic_task_form(task, **changes):
    data = {
        "name": task.name,
        "regtask": "",
        "task": task.task,
        "enabled": "on",
        "description": "",
        "interval": task.interval_id,
        "crontab": "",
        "solar": "",
        "clocked": "",
        "start_time_0": "",
        "start_time_1": "",
        "args": "[]",
        "kwargs": "{}",
        "expires_0": "",
        "expires_1": "",
        "expire_seconds": "",
        "queue": "",
        "exchange": "",
        "routing_key": "",
        "priority": "",
        "headers": "{}",
    }
    data.update(changes)
    return data


def test_periodic_task_interval_change_is_recorded(admin_client, admin_user):
    every5 = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    every10 = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="audited-task", task="modelhub.tasks.audited", interval=every5)
    url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    response = admin_client.post(url, periodic_task_form(task, interval=every10.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    change = ConfigChange.objects.get(target_type="periodictask")
    assert (change.action, change.actor) == ("change", admin_user.username)
    assert (change.before, change.after) == ({"interval": "every 5 minutes"}, {"interval": "every 10 minutes"})


def test_periodic_task_disable_action_is_recorded(admin_client):
    every = IntervalSchedule.objects.create(every=7, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="audited-task", task="modelhub.tasks.audited", interval=every)
    admin_client.post(
        reverse("admin:django_celery_beat_periodictask_changelist"),
        {"action": "disable_tasks", "_selected_action": [task.pk]},
    )
    change = ConfigChange.objects.get(target_type="periodictask")
    assert (change.action, change.target, change.before, change.after) == (
        "disable",
        "audited-task",
        {"enabled": True},
        {"enabled": False},
    )


def test_interval_schedule_edit_is_recorded(admin_client):
    every = IntervalSchedule.objects.create(every=11, period=IntervalSchedule.MINUTES)
    url = reverse("admin:django_celery_beat_intervalschedule_change", args=[every.pk])
    inline = {f"periodictask_set-{k}": v for k, v in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0))}
    response = admin_client.post(url, {"every": "13", "period": "minutes", **inline})
    assert response.status_code == 302, response.content.decode()[:2000]
    change = ConfigChange.objects.get(target_type="intervalschedule")
    assert (change.before, change.after) == ({"every": 11}, {"every": 13})


def aimodel_form(model, **changes):
    fields = (
        "model_id",
        "display_name",
        "status",
        "context_window",
        "max_output_tokens",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "max_tokens_param",
        "env_suffix",
        "description",
    )
    data = {name: getattr(model, name) for name in fields}
    data["provider"] = model.provider_id
    for flag in ("enabled", "supports_tools", "supports_streaming", "supports_temperature"):
        if getattr(model, flag):
            data[flag] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_model_price_and_capability_edit_records_only_the_changed_fields(admin_client, route):
    model = route.entries.get(position=0).model
    data = aimodel_form(
        model,
        input_price_per_mtok="1",  # the same price, written differently: no change
        output_price_per_mtok="6.5",
        context_window="200000",
        max_tokens_param="max_completion_tokens",
    )
    del data["supports_temperature"]
    assert admin_client.post(reverse("admin:modelhub_aimodel_change", args=[model.pk]), data).status_code == 302
    change = ConfigChange.objects.get(target_type="aimodel")
    assert change.action == "change"
    assert change.before == {
        "context_window": 128000,
        "output_price_per_mtok": "4.000000",
        "supports_temperature": True,
        "max_tokens_param": "max_tokens",
    }
    assert change.after == {
        "context_window": 200000,
        "output_price_per_mtok": "6.500000",
        "supports_temperature": False,
        "max_tokens_param": "max_completion_tokens",
    }


def test_createapikey_prints_the_key_last_and_records_it_without_the_secret(db):
    import io

    from django.core.management import call_command

    from modelhub.models import ApiKey

    out = io.StringIO()
    call_command("createapikey", "cli-key", "--rpm-limit", "5", "--route", "pam", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(name="cli-key")
    change = ConfigChange.objects.get(action="add", target__contains="cli-key")

    assert key.rpm_limit == 5 and [r.name for r in key.routes.all()] == ["pam"]
    assert change.actor == "manage.py createapikey" and change.source == "system"
    recorded = str(change.before) + str(change.after)
    assert secret not in recorded and key.key_hash not in recorded and "cli-key" in recorded
