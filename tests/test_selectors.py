"""The reads the admin API, the console and the metrics endpoint make."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from modelhub import selectors, services
from modelhub.audit import Actor, Source
from modelhub.models import AIModel, ApiKey, ModelHealth, Route, RouteEntry
from tests.factories import (
    AIModelFactory,
    ApiKeyFactory,
    ModelHealthFactory,
    ProviderFactory,
    RouteFactory,
    UsageRecordFactory,
)

pytestmark = pytest.mark.django_db

OPERATOR = Actor("ops", Source.ADMIN)


def queries(read) -> int:
    with CaptureQueriesContext(connection) as ctx:
        read()
    return len(ctx)


# --- routing as chat sees it -----------------------------------------------------------


def test_route_positions_follow_the_live_chain_and_skip_disabled_models():
    a, b, off = AIModelFactory(), AIModelFactory(), AIModelFactory(enabled=False)
    route = RouteFactory(chain=[off, b, a])
    assert selectors.route_positions(name=route.name) == {b.pk: 0, a.pk: 1}


def test_route_positions_of_an_unknown_route_are_empty():
    assert selectors.route_positions(name="no-such-route") == {}


def test_routes_live_leave_out_disabled_entries():
    a, b = AIModelFactory(), AIModelFactory()
    route = RouteFactory(chain=[a, b])
    RouteEntry.objects.filter(route=route, model=a).update(enabled=False)
    assert [m.model_id for m in selectors.routes_live()[route.name].chain] == [b.model_id]


def test_health_board_holds_the_stored_cooldown_once_the_snapshot_is_read():
    health = ModelHealthFactory(cooling_down=True)
    snapshot = selectors.routing_snapshot()
    board = selectors.health_board()
    assert snapshot.version == selectors.routing_snapshot().version
    assert board.get(health.model.pk).available(time.time()) is False


# --- the registry ----------------------------------------------------------------------


def test_route_get_by_name_finds_the_route_or_none():
    route = RouteFactory()
    assert selectors.route_get_by_name(name=route.name) == route
    assert selectors.route_get_by_name(name="no-such-route") is None


def test_routes_by_names_returns_only_those_named():
    wanted, other = RouteFactory(), RouteFactory()
    found = selectors.routes_by_names(names=[wanted.name, wanted.name, "no-such-route"])
    assert list(found) == [wanted]
    assert other not in found


def test_routes_with_chains_give_entries_in_order_without_a_query_per_route():
    for _ in range(3):
        RouteFactory(chain=[AIModelFactory(), AIModelFactory()])
    first = RouteFactory(chain=[AIModelFactory(model_id="test-model-z"), AIModelFactory(model_id="test-model-y")])

    def read():
        return {
            r.name: [e.model.model_id for e in r.entries.all()]
            for r in selectors.routes_with_chains(routes=Route.objects.all())
        }

    assert read()[first.name] == ["test-model-z", "test-model-y"]
    assert queries(read) == 2


def test_route_chain_stored_keeps_disabled_entries_in_order():
    a, b = AIModelFactory(), AIModelFactory()
    route = RouteFactory(chain=[a, b])
    RouteEntry.objects.filter(route=route, model=a).update(enabled=False)
    assert selectors.route_chain_stored(route=route) == [
        {"model": f"{a.provider.name}/{a.model_id}", "enabled": False},
        {"model": f"{b.provider.name}/{b.model_id}", "enabled": True},
    ]


def test_route_chain_previous_is_the_chain_before_the_latest_change():
    a, b = AIModelFactory(), AIModelFactory()
    route = RouteFactory(chain=[a, b])
    assert selectors.route_chain_previous(route=route) is None
    before = selectors.route_chain_stored(route=route)
    services.route_set_primary(route=route, model=b, by=OPERATOR)
    assert selectors.route_chain_previous(route=route) == before


def test_route_entries_with_models_load_route_and_model_in_one_query():
    RouteFactory(chain=[AIModelFactory(), AIModelFactory()])
    entries = selectors.route_entries_with_models(entries=RouteEntry.objects.all())
    assert queries(lambda: [(e.route.name, e.model.model_id) for e in entries]) == 1


def test_models_available_leave_out_disabled_retired_and_disabled_providers():
    usable = AIModelFactory()
    AIModelFactory(enabled=False)
    AIModelFactory(status=AIModel.Status.RETIRED)
    AIModelFactory(provider=ProviderFactory(enabled=False))
    ours = selectors.models_available().filter(provider__name__startswith="prov-")
    assert list(ours) == [usable]


def test_models_by_name_takes_a_model_id_or_provider_slash_model_id():
    one = AIModelFactory(model_id="test-model-shared")
    two = AIModelFactory(model_id="test-model-shared")
    assert set(selectors.models_by_name(name="test-model-shared")) == {one, two}
    assert selectors.models_by_name(name=f"{two.provider.name}/test-model-shared") == [two]
    assert selectors.models_by_name(name="prov-none/test-model-shared") == []


def test_model_health_rows_carry_health_without_a_query_per_model():
    cooling = ModelHealthFactory(cooling_down=True).model
    never_failed = AIModelFactory()
    rows = {m.pk: m for m in selectors.model_health_rows()}
    assert rows[cooling.pk].health.state == ModelHealth.State.COOLING_DOWN
    assert not hasattr(rows[never_failed.pk], "health")
    assert queries(lambda: [(m.provider.name, getattr(m, "health", None)) for m in selectors.model_health_rows()]) == 1


def test_models_of_health_rows_are_the_rows_models():
    picked, other = ModelHealthFactory(), ModelHealthFactory()
    models = selectors.models_of_health_rows(rows=ModelHealth.objects.filter(pk=picked.pk))
    assert list(models) == [picked.model]
    assert other.model not in models


def test_api_keys_active_leave_out_deactivated_keys():
    active, inactive = ApiKeyFactory(), ApiKeyFactory(is_active=False)
    assert list(selectors.api_keys_active(keys=ApiKey.objects.filter(pk__in=[active.pk, inactive.pk]))) == [active]


def test_user_get_by_username(django_user_model):
    user = django_user_model.objects.create_user("ops-reader")
    assert selectors.user_get_by_username(username="ops-reader") == user
    assert selectors.user_get_by_username(username="nobody") is None


# --- the usage ledger ------------------------------------------------------------------


def test_day_bounds_are_one_utc_day():
    day = datetime(2025, 3, 30, tzinfo=UTC).date()
    start, end = selectors.day_bounds(day)
    assert (start.isoformat(), end - start) == ("2025-03-30T00:00:00+00:00", timedelta(days=1))


def test_ledger_sums_count_a_request_once_with_its_failed_attempt_and_fallback():
    UsageRecordFactory(request_id="req-fallback", attempt=1, outcome="timeout", cost_usd=0)
    UsageRecordFactory(request_id="req-fallback", attempt=2, outcome="ok", is_fallback=True, model="backup")
    rows = selectors.ledger_sums(day=selectors.today())
    totals = {k: sum(r[k] for r in rows) for k in ("requests", "attempts", "failures", "fallbacks")}
    assert totals == {"requests": 1, "attempts": 2, "failures": 1, "fallbacks": 1}


def test_usage_metrics_split_routes_models_and_probes():
    day = selectors.today()
    UsageRecordFactory(route="pam", provider="p", model="m", input_tokens=10)
    UsageRecordFactory(route="pam", provider="p", model="n", input_tokens=5)
    UsageRecordFactory(route="fast", provider="p", model="m", input_tokens=1)
    UsageRecordFactory(route="", provider="p", model="m", is_probe=True)

    metrics = selectors.usage_metrics(day=day)

    assert metrics["day"] == day
    assert (metrics["routes"]["pam"]["requests"], metrics["routes"]["fast"]["requests"]) == (2, 1)
    assert (metrics["models"]["p/m"]["input_tokens"], metrics["models"]["p/n"]["input_tokens"]) == (11, 5)
    assert (metrics["totals"]["requests"], metrics["probes"]["requests"]) == (3, 1)


def test_usage_metrics_today_leave_out_earlier_days():
    UsageRecordFactory(route="pam")
    UsageRecordFactory(route="pam", created_at=datetime.now(UTC) - timedelta(days=2))
    metrics = selectors.usage_metrics_today()
    assert metrics["day"] == selectors.today()
    assert metrics["totals"]["requests"] == 1
