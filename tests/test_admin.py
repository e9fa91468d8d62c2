import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from modelhub.models import AIModel, ApiKey, ModelHealth, Provider, Route, RouteEntry, UsageRecord
from modelhub.services import api_key_hash
from tests.factories import (
    AIModelFactory,
    ApiKeyFactory,
    ModelHealthFactory,
    ProviderFactory,
    RouteEntryFactory,
    RouteFactory,
    UsageRecordFactory,
)

pytestmark = pytest.mark.django_db

ADMIN_MODELS = (Provider, AIModel, ApiKey, ModelHealth, Route, RouteEntry, UsageRecord)


def changelist(model):
    return reverse(f"admin:modelhub_{model._meta.model_name}_changelist")


def change(obj):
    return reverse(f"admin:modelhub_{obj._meta.model_name}_change", args=[obj.pk])


def act(client, model, action, objects, **extra):
    data = {"action": action, "_selected_action": [o.pk for o in objects], **extra}
    return client.post(changelist(model), data, follow=True)


def message_texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def catalog():
    """A small registry of our own, named so it cannot collide with the seeded one."""
    provider = ProviderFactory()
    models = [AIModelFactory(provider=provider) for _ in range(4)]
    route = RouteFactory(chain=models, latency_budget_ms=30_000)
    ModelHealthFactory(model=models[1], cooling_down=True)
    ModelHealthFactory(model=models[2], half_open=True)
    UsageRecordFactory(route=route.name, provider=provider.name, model=models[0].model_id)
    ApiKeyFactory()
    return {"provider": provider, "models": models, "route": route}


# --- pages render ----------------------------------------------------------------------


def test_site_header_names_the_console(admin_client):
    assert "PAM Model Hub" in admin_client.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_changelists_render(admin_client, catalog, model):
    assert admin_client.get(changelist(model)).status_code == 200


def test_change_pages_render(admin_client, catalog):
    objects = [
        catalog["provider"],
        *catalog["models"],
        catalog["route"],
        *RouteEntry.objects.filter(route=catalog["route"]),
        *ModelHealth.objects.all(),
        *ApiKey.objects.all(),
        *UsageRecord.objects.all(),
    ]
    for obj in objects:
        assert admin_client.get(change(obj)).status_code == 200, obj


def test_add_pages_render(admin_client):
    for name in ("provider", "aimodel", "route", "routeentry", "apikey"):
        assert admin_client.get(reverse(f"admin:modelhub_{name}_add")).status_code == 200, name


def test_model_pages_render_without_any_health_rows(admin_client):
    model = AIModelFactory()
    ModelHealth.objects.all().delete()
    listing = admin_client.get(changelist(AIModel))
    assert listing.status_code == 200
    assert "health-healthy" in listing.content.decode()
    assert admin_client.get(change(model)).status_code == 200
    assert admin_client.get(changelist(ModelHealth)).status_code == 200


def test_model_list_shows_health_badges(admin_client, catalog):
    cooling = ModelHealth.objects.get(model=catalog["models"][1])
    html = admin_client.get(changelist(AIModel), {"provider__id__exact": catalog["provider"].pk}).content.decode()
    assert "health-healthy" in html
    assert f"cooling down until {cooling.cooldown_until:%H:%M:%S}" in html
    assert "half open" in html


def test_model_changelist_queries_do_not_grow_with_rows(admin_client):
    def queries_for_listing():
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(changelist(AIModel)).status_code == 200
        return len(ctx)

    AIModelFactory()
    few = queries_for_listing()
    for _ in range(5):
        ModelHealthFactory(model=AIModelFactory(provider=ProviderFactory()), cooling_down=True)
    assert queries_for_listing() == few


def test_route_list_shows_chain_in_order_with_disabled_marked(admin_client):
    a, b, c = (AIModelFactory(model_id=f"test-model-chain-{x}") for x in "abc")
    route = RouteFactory(chain=[a, b, c])
    RouteEntry.objects.filter(route=route, model=b).update(enabled=False)
    html = admin_client.get(changelist(Route), {"q": route.name}).content.decode()
    assert "test-model-chain-a → test-model-chain-b (disabled) → test-model-chain-c" in html


def test_route_change_page_lists_entries_by_position(admin_client):
    first, second = AIModelFactory(model_id="test-model-first"), AIModelFactory(model_id="test-model-second")
    route = RouteFactory()
    RouteEntryFactory(route=route, model=second, position=1)
    RouteEntryFactory(route=route, model=first, position=0)
    html = admin_client.get(change(route)).content.decode()
    assert html.index("test-model-first") < html.index("test-model-second")


def test_route_inline_save_keeps_the_order_and_closes_gaps(admin_client):
    first, second = AIModelFactory(), AIModelFactory()
    route = RouteFactory()
    entries = [
        RouteEntryFactory(route=route, model=first, position=0),
        RouteEntryFactory(route=route, model=second, position=1),
    ]
    data = {
        "name": route.name,
        "strategy": route.strategy,
        "strong_share_target": route.strong_share_target,
        "classifier_config": "{}",
        "class_budgets_ms": "{}",
        "enabled": "on",
        "entries-TOTAL_FORMS": "2",
        "entries-INITIAL_FORMS": "2",
        "entries-MIN_NUM_FORMS": "0",
        "entries-MAX_NUM_FORMS": "1000",
    }
    for i, (entry, position) in enumerate(zip(entries, (7, 3), strict=False)):  # operator swaps the order
        data.update(
            {
                f"entries-{i}-id": entry.pk,
                f"entries-{i}-route": route.pk,
                f"entries-{i}-model": entry.model.pk,
                f"entries-{i}-position": position,
                f"entries-{i}-weight": 100,
                f"entries-{i}-enabled": "on",
            }
        )
    assert admin_client.post(change(route), data).status_code == 302
    assert list(route.entries.order_by("position").values_list("model_id", "position")) == [
        (second.pk, 0),
        (first.pk, 1),
    ]


# --- providers: the key is never shown ------------------------------------------------


def test_provider_shows_key_set_and_never_its_value(admin_client, monkeypatch):
    secret = "sk-live-NEVER-SHOW-ME-0123456789"
    monkeypatch.setenv("PAM_TEST_SET_KEY", secret)
    provider = ProviderFactory(api_key_env="PAM_TEST_SET_KEY")
    pages = [
        admin_client.get(url)
        for url in (
            changelist(Provider),
            change(provider),
            reverse("admin:modelhub_provider_history", args=[provider.pk]),
        )
    ]
    for page in pages:
        assert page.status_code == 200
        assert secret not in page.content.decode()
    assert "key-set" in pages[0].content.decode()
    assert "key-set" in pages[1].content.decode()


def test_provider_without_key_in_environment_shows_missing(admin_client, monkeypatch):
    monkeypatch.delenv("PAM_TEST_ABSENT_KEY", raising=False)
    provider = ProviderFactory(api_key_env="PAM_TEST_ABSENT_KEY")
    assert "key-missing" in admin_client.get(change(provider)).content.decode()


# --- models: toggle and actions -------------------------------------------------------


def test_model_list_toggle_saves_enabled(admin_client):
    on, off = AIModelFactory(enabled=True), AIModelFactory(enabled=False)
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
        "form-0-id": on.pk,  # unchecked: disable
        "form-1-id": off.pk,
        "form-1-enabled": "on",  # checked: enable
    }
    response = admin_client.post(changelist(AIModel), data)
    assert response.status_code == 302
    on.refresh_from_db(), off.refresh_from_db()
    assert (on.enabled, off.enabled) == (False, True)


def test_disable_and_enable_actions(admin_client):
    models = [AIModelFactory() for _ in range(2)]
    act(admin_client, AIModel, "disable", models)
    assert not AIModel.objects.filter(pk__in=[m.pk for m in models], enabled=True).exists()
    act(admin_client, AIModel, "enable", models[:1])
    assert list(
        AIModel.objects.filter(pk__in=[m.pk for m in models]).values_list("enabled", flat=True).order_by("pk")
    ) == [True, False]


def test_reset_health_from_model_list(admin_client):
    health = ModelHealthFactory(cooling_down=True)
    act(admin_client, AIModel, "reset_health", [health.model])
    health.refresh_from_db()
    assert (health.state, health.cooldown_until, health.consecutive_failures) == ("healthy", None, 0)


def test_reset_health_from_health_list(admin_client):
    cooling, half_open = ModelHealthFactory(cooling_down=True), ModelHealthFactory(half_open=True)
    untouched = ModelHealthFactory(cooling_down=True)
    act(admin_client, ModelHealth, "reset_health", [cooling, half_open])
    states = {h.pk: h.state for h in ModelHealth.objects.filter(pk__in=[cooling.pk, half_open.pk, untouched.pk])}
    assert states == {cooling.pk: "healthy", half_open.pk: "healthy", untouched.pk: "cooling_down"}


def test_health_rows_are_read_only(admin_client):
    health = ModelHealthFactory(cooling_down=True)
    assert admin_client.post(change(health), {"state": "healthy"}).status_code == 403
    assert admin_client.get(reverse("admin:modelhub_modelhealth_add")).status_code == 403
    health.refresh_from_db()
    assert health.state == "cooling_down"


# --- route entries --------------------------------------------------------------------


def test_make_primary_moves_entry_to_front_and_keeps_the_rest_in_order(admin_client):
    models = [AIModelFactory() for _ in range(4)]
    route = RouteFactory(chain=models)
    chosen = RouteEntry.objects.get(route=route, model=models[2])
    act(admin_client, RouteEntry, "make_primary", [chosen])
    order = list(route.entries.order_by("position").values_list("model_id", "position"))
    assert order == [(models[2].pk, 0), (models[0].pk, 1), (models[1].pk, 2), (models[3].pk, 3)]


def test_make_primary_refuses_two_entries_of_one_route(admin_client):
    models = [AIModelFactory() for _ in range(3)]
    route = RouteFactory(chain=models)
    before = list(route.entries.order_by("position").values_list("model_id", flat=True))
    response = act(admin_client, RouteEntry, "make_primary", route.entries.filter(position__gte=1))
    assert any("one entry per route" in m for m in message_texts(response))
    assert list(route.entries.order_by("position").values_list("model_id", flat=True)) == before


def test_route_entry_enable_disable_actions(admin_client):
    route = RouteFactory(chain=[AIModelFactory(), AIModelFactory()])
    entries = list(route.entries.order_by("position"))
    act(admin_client, RouteEntry, "disable", entries)
    assert not route.entries.filter(enabled=True).exists()
    act(admin_client, RouteEntry, "enable", entries[1:])
    assert list(route.entries.order_by("position").values_list("enabled", flat=True)) == [False, True]


def test_route_entries_filter_by_route(admin_client):
    shown = RouteFactory(chain=[AIModelFactory(model_id="test-model-shown")])
    RouteFactory(chain=[AIModelFactory(model_id="test-model-hidden")])
    html = admin_client.get(changelist(RouteEntry), {"route__id__exact": shown.pk}).content.decode()
    assert "test-model-shown" in html and "test-model-hidden" not in html


# --- API keys -------------------------------------------------------------------------


def test_adding_a_key_shows_the_secret_once_and_stores_its_hash(admin_client):
    response = admin_client.post(reverse("admin:modelhub_apikey_add"), {"name": "key-ci"}, follow=True)
    assert response.status_code == 200
    shown = [m for m in message_texts(response) if "Copy this key now" in m]
    assert len(shown) == 1
    secret = re.search(r"pam_[A-Za-z0-9_-]+", shown[0]).group(0)

    key = ApiKey.objects.get(name="key-ci")
    assert key.key_hash == api_key_hash(secret)
    assert secret.startswith(key.prefix) and secret not in (key.prefix, key.key_hash)
    assert response.content.decode().count(secret) == 1
    for url in (changelist(ApiKey), change(key)):
        assert secret not in admin_client.get(url).content.decode()


def test_adding_a_key_stores_its_routes_and_limits(admin_client):
    allowed, _ = RouteFactory(), RouteFactory()
    response = admin_client.post(
        reverse("admin:modelhub_apikey_add"),
        {"name": "key-limited", "routes": [allowed.pk], "rpm_limit": "30", "daily_budget_usd": "2.5"},
    )
    key = ApiKey.objects.get(name="key-limited")
    assert response.status_code == 302 and response.url == changelist(ApiKey)
    assert (list(key.routes.all()), key.rpm_limit, key.daily_budget_usd) == ([allowed], 30, Decimal("2.5"))


def test_key_hash_and_prefix_cannot_be_edited(admin_client):
    key = ApiKeyFactory(secret="pam_known-secret-value-000")
    admin_client.post(change(key), {"name": "renamed", "is_active": "on", "prefix": "pam_forged", "key_hash": "0" * 64})
    key.refresh_from_db()
    assert key.name == "renamed"
    assert (key.prefix, key.key_hash) == ("pam_known-se", api_key_hash("pam_known-secret-value-000"))


def test_deactivate_action(admin_client):
    keys = [ApiKeyFactory(), ApiKeyFactory()]
    act(admin_client, ApiKey, "deactivate", keys[:1])
    assert list(
        ApiKey.objects.filter(pk__in=[k.pk for k in keys]).order_by("pk").values_list("is_active", flat=True)
    ) == [False, True]


# --- usage ledger ---------------------------------------------------------------------


def test_usage_records_cannot_be_added_changed_or_deleted(admin_client):
    record = UsageRecordFactory(outcome="ok")
    assert admin_client.get(reverse("admin:modelhub_usagerecord_add")).status_code == 403
    assert admin_client.post(change(record), {"outcome": "timeout"}).status_code == 403
    assert (
        admin_client.post(reverse("admin:modelhub_usagerecord_delete", args=[record.pk]), {"post": "yes"}).status_code
        == 403
    )
    record.refresh_from_db()
    assert record.outcome == "ok"


def test_usage_cost_is_rounded_for_display_only(admin_client):
    record = UsageRecordFactory(cost_usd=Decimal("0.000012340001"), request_id="req-cost-display")
    html = admin_client.get(changelist(UsageRecord), {"q": "req-cost-display"}).content.decode()
    assert "$0.00001234" in html
    record.refresh_from_db()
    assert record.cost_usd == Decimal("0.000012340001")
