import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from modelhub.models import AIModel, ApiKey, ConfigChange, ModelHealth, Provider, Route, RouteEntry, UsageRecord
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


# --- the console at a glance -----------------------------------------------------------


def test_route_page_shows_each_entrys_state_price_and_place_now(admin_client):
    first, second = AIModelFactory(model_id="test-model-glance-a"), AIModelFactory(model_id="test-model-glance-b")
    first.input_price_per_mtok, first.output_price_per_mtok = Decimal("3"), Decimal("15")
    first.save()
    route = RouteFactory(chain=[first, second])
    health = ModelHealthFactory(model=first, cooling_down=True)

    response = admin_client.get(change(route))

    rows = response.context["chain_now"]["rows"]
    assert [(r["model"].model_id, r["badge"]["state"], r["now"]) for r in rows] == [
        ("test-model-glance-a", "cooling_down", "passed over: cooling down"),
        ("test-model-glance-b", "healthy", "#1"),
    ]
    assert rows[0]["price"] == "$3.00 / $15.00"
    html = response.content.decode()
    assert f"cooling down until {health.cooldown_until:%H:%M:%S}" in html
    assert html.count('class="button make-primary"') == 1  # on the entry that is not primary


def test_answers_from_now_passes_over_a_cooling_down_model(admin_client):
    first, second = AIModelFactory(model_id="test-model-cool-a"), AIModelFactory(model_id="test-model-cool-b")
    route = RouteFactory(chain=[first, second])
    ModelHealthFactory(model=first, cooling_down=True)

    html = admin_client.get(changelist(Route), {"q": route.name}).content.decode()

    assert "test-model-cool-b; cooling down: test-model-cool-a until" in html


def test_make_primary_from_the_route_page(admin_client):
    models = [AIModelFactory() for _ in range(3)]
    route = RouteFactory(chain=models)
    url = reverse("admin:modelhub_route_make_primary", args=[route.pk])

    response = admin_client.post(url, {"model": models[2].pk}, follow=True)

    assert response.redirect_chain[-1][0] == change(route)
    assert f"{models[2].model_id} is now primary of {route.name}." in message_texts(response)
    assert list(route.entries.order_by("position").values_list("model_id", flat=True)) == [
        models[2].pk,
        models[0].pk,
        models[1].pk,
    ]
    assert ConfigChange.objects.filter(route=route.name, action="set_primary", actor="admin").exists()


@pytest.mark.parametrize("chosen", ["", "abc", "999999"])
def test_make_primary_refuses_a_model_outside_the_chain(admin_client, chosen):
    models = [AIModelFactory() for _ in range(2)]
    route = RouteFactory(chain=models)

    response = admin_client.post(
        reverse("admin:modelhub_route_make_primary", args=[route.pk]), {"model": chosen}, follow=True
    )

    assert "Pick a model of this route's chain." in message_texts(response)
    assert list(route.entries.order_by("position").values_list("model_id", flat=True)) == [m.pk for m in models]


def test_make_primary_needs_post_and_the_change_permission(client, admin_client, django_user_model):
    route = RouteFactory(chain=[AIModelFactory(), AIModelFactory()])
    url = reverse("admin:modelhub_route_make_primary", args=[route.pk])
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_route"))
    client.force_login(viewer)

    assert admin_client.get(url).status_code == 405
    assert client.post(url, {"model": route.entries.last().model_id}).status_code == 403
    assert "make-primary" not in client.get(change(route)).content.decode()


def test_model_health_lists_every_model_in_use(admin_client):
    failed, never = AIModelFactory(model_id="test-model-failed"), AIModelFactory(model_id="test-model-never-failed")
    unused = AIModelFactory(model_id="test-model-unused")
    RouteFactory(chain=[failed, never])
    ModelHealthFactory(model=failed, cooling_down=True)

    html = admin_client.get(changelist(ModelHealth)).content.decode()
    cooling = admin_client.get(changelist(ModelHealth), {"state__exact": "cooling_down"}).content.decode()
    searched = admin_client.get(changelist(ModelHealth), {"q": "never"}).content.decode()

    assert "test-model-failed" in html and "test-model-never-failed" in html and unused.model_id not in html
    assert "test-model-never-failed" not in cooling and "test-model-failed" in cooling
    assert "test-model-never-failed" in searched and "test-model-failed" not in searched


def test_a_never_failed_model_has_no_row_to_act_on(admin_client):
    model = AIModelFactory(model_id="test-model-rowless")
    RouteFactory(chain=[model])

    html = admin_client.get(changelist(ModelHealth), {"q": "rowless"}).content.decode()

    assert "test-model-rowless" in html
    assert 'name="_selected_action"' not in html


def _ledger_rows():
    UsageRecordFactory(request_id="ab" * 16, attempt=1, outcome="overloaded", cost_usd=Decimal("0"), route="r-sum")
    UsageRecordFactory(
        request_id="ab" * 16, attempt=2, is_fallback=True, cost_usd=Decimal("0.000002500001"), route="r-sum"
    )
    UsageRecordFactory(request_id="cd" * 16, cost_usd=Decimal("0.0000010"), route="r-sum", input_tokens=5)
    UsageRecordFactory(request_id="ef" * 16, cost_usd=Decimal("9"), route="r-other")


def test_ledger_totals_of_the_filtered_rows(admin_client):
    _ledger_rows()

    response = admin_client.get(changelist(UsageRecord), {"route": "r-sum"})

    totals = response.context["ledger_totals"]
    assert (totals["attempts"], totals["requests"], totals["failures"], totals["fallbacks"]) == (3, 2, 1, 1)
    assert totals["cost"] == "$0.0000035"  # 0.000002500001 + 0.000001, rounded for display only
    assert "Totals of the 3 attempts" in response.content.decode()


def test_ledger_totals_wait_until_the_list_is_narrowed(admin_client):
    _ledger_rows()

    response = admin_client.get(changelist(UsageRecord))

    assert response.context["ledger_totals"] is None
    assert "Totals appear once the list is narrowed" in response.content.decode()


def test_ledger_puts_outcome_and_cost_first():
    from modelhub.admin.usage import UsageRecordAdmin

    assert UsageRecordAdmin.list_display[:3] == ("time", "outcome_shown", "cost")


@pytest.mark.parametrize("term", ["ab" * 16, "AB" * 16, "abababab", " abababababab "])
def test_ledger_is_searchable_by_request_id_or_its_start(admin_client, term):
    _ledger_rows()

    response = admin_client.get(changelist(UsageRecord), {"q": term})

    assert {r.request_id for r in response.context["cl"].result_list} == {"ab" * 16}


def test_ledger_row_shows_its_routing(admin_client):
    record = UsageRecordFactory(
        routing={"override": "FORCE_MODEL=x", "skipped": [["old-model", "retired on 2026-01-01"]]},
        strategy="priority",
    )

    html = admin_client.get(change(record)).content.decode()

    assert "FORCE_MODEL=x" in html
    assert "old-model" in html and "retired on 2026-01-01" in html
    assert f"?q={record.request_id}" in html  # every attempt of its request


def test_config_changes_show_a_diff_of_the_chain(admin_client):
    change_row = ConfigChange.objects.create(
        actor="ops",
        source="admin",
        action="set_primary",
        target_type="route",
        route="pam",
        before={"chain": [{"model": "p/a", "enabled": True}, {"model": "p/b", "enabled": True}]},
        after={
            "chain": [
                {"model": "p/b", "enabled": True},
                {"model": "p/a", "enabled": False},
                {"model": "p/c", "enabled": True},
            ]
        },
    )

    listing = admin_client.get(changelist(ConfigChange)).content.decode()
    page = admin_client.get(change(change_row)).content.decode()

    assert "b 2 → 1; a disabled; c added" in listing
    assert 'class="diff-moved"' in page and 'class="diff-disabled"' in page and 'class="diff-added"' in page


def test_admin_index_groups_registry_traffic_money_and_schedules(admin_client):
    sections = admin_client.get(reverse("admin:index")).context["app_list"]

    names = [s["name"].split(":")[0] for s in sections]
    assert names[:5] == ["Registry", "Traffic", "Money", "Schedules", "Changes and users"]
    registry = [m["object_name"] for m in sections[0]["models"]]
    assert registry[:4] == ["Route", "RouteEntry", "AIModel", "Provider"]


def test_a_model_no_section_names_lands_in_other():
    from modelhub.admin.sections import sections_of

    app_list = [{"models": [{"object_name": "Route", "name": "Routes"}, {"object_name": "Gadget", "name": "Gadgets"}]}]

    assert [(s["name"], [m["name"] for m in s["models"]]) for s in sections_of(app_list)] == [
        ("Registry: what can answer", ["Routes"]),
        ("Other", ["Gadgets"]),
    ]
