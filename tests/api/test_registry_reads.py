"""``GET /api/v1/models/`` and ``GET /api/v1/models/<model_id>/``: the registry as API
clients read it (capabilities, prices, lifecycle, routes, live statistics), its filters
and their 400s, the 404 of an unknown model, and who may read it."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from modelhub.models import AIModel, UsageRecord
from modelhub.runtime import runtime
from modelhub.services import api_key_create
from modelhub.stats import percentile

LIST = "/api/v1/models/"
TODAY = datetime.now(UTC).date()


@pytest.fixture
def catalog(hub):
    """Only the test's models are enabled (the seeded catalog's are switched off):
    "cheap" (openai: tools, JSON schema), "seer" (anthropic: tools, vision), "old" (google,
    retiring in 10 days, successor "seer"), "gone" (google, retired, no successor) and
    "org/vendor-1.5" (an OpenAI-compatible id with a slash and dots, no tools, no streaming).
    Route "pam" walks cheap then seer, route "eyes" seer then old."""
    AIModel.objects.exclude(provider__in=hub.providers.values()).update(enabled=False)
    cheap = hub.model("cheap", "openai", supports_json_schema=True, input_price_per_mtok=Decimal("0.15"))
    seer = hub.model("seer", "anthropic", supports_vision=True, params_unsupported=["top_p"])
    old = hub.model(
        "old",
        "google",
        deprecated_on=TODAY - timedelta(days=100),
        retires_on=TODAY + timedelta(days=10),
        successor=seer,
        lifecycle_note="Announced by the provider.",
    )
    hub.model("gone", "google", retires_on=TODAY - timedelta(days=1))
    hub.model("org/vendor-1.5", "openai_compatible", supports_tools=False, supports_streaming=False)
    hub.route("pam", [cheap, seer])
    hub.route("eyes", [seer, old])
    return hub


def read(hub, path, *, key=None, **query):
    headers = {} if key is False else {"Authorization": f"Bearer {key or hub.key}"}
    return hub.client.get(path, query, headers=headers)


def ids(hub, *, key=None, **query) -> list[str]:
    response = read(hub, LIST, key=key, **query)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["models"])
    return [m["id"] for m in body["models"]]


def detail(hub, model_id, *, key=None) -> dict:
    response = read(hub, f"{LIST}{model_id}/", key=key)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_list_holds_every_enabled_model_with_its_description(catalog):
    response = read(catalog, LIST)

    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["models"]}
    assert set(models) == {"cheap", "seer", "old", "gone", "org/vendor-1.5"}
    cheap = models["cheap"]
    assert cheap["qualified_id"] == "sim-openai/cheap"
    assert (cheap["provider"], cheap["provider_kind"], cheap["enabled"], cheap["status"]) == (
        "sim-openai",
        "openai",
        True,
        "active",
    )
    assert cheap["capabilities"] == {
        "tools": True,
        "vision": False,
        "json_schema": True,
        "streaming": True,
        "temperature": True,
        "params_unsupported": [],
    }
    assert cheap["prices"] == {"input_per_mtok": 0.15, "output_per_mtok": 15.0}
    assert cheap["routes"] == [{"route": "pam", "position": 0, "enabled": True}]
    assert cheap["health"] == {"state": "healthy", "available": True}
    assert cheap["stats"]["requests"] == 0 and cheap["stats"]["p50_ms"] is None
    assert models["seer"]["capabilities"]["params_unsupported"] == ["top_p"]
    assert models["seer"]["routes"] == [
        {"route": "eyes", "position": 0, "enabled": True},
        {"route": "pam", "position": 1, "enabled": True},
    ]


def test_a_disabled_model_is_not_in_the_registry(catalog):
    AIModel.objects.filter(model_id="gone").update(enabled=False)  # before the first snapshot

    assert "gone" not in ids(catalog)
    assert read(catalog, f"{LIST}gone/").status_code == 404


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"capability": "vision"}, {"seer"}),
        ({"capability": "json_schema"}, {"cheap"}),
        ({"capability": ["tools", "json_schema"]}, {"cheap"}),  # repeated: all must hold
        ({"capability": "tools,vision"}, {"seer"}),  # comma-separated: all must hold
        ({"capability": "streaming"}, {"cheap", "seer", "old", "gone"}),
        ({"capability": "vision,json_schema"}, set()),
    ],
)
def test_capability_filter(catalog, query, expected):
    assert set(ids(catalog, **query)) == expected


@pytest.mark.parametrize(
    "provider, expected",
    [
        ("sim-anthropic", {"seer"}),  # a provider's name
        ("google", {"old", "gone"}),  # a provider kind
        ("openai_compatible", {"org/vendor-1.5"}),
    ],
)
def test_provider_filter(catalog, provider, expected):
    assert set(ids(catalog, provider=provider)) == expected


@pytest.mark.parametrize(
    "state, expected",
    [
        ("active", {"cheap", "seer", "org/vendor-1.5"}),
        ("retiring_soon", {"old"}),
        ("retired", {"gone"}),
        ("deprecated", set()),
    ],
)
def test_lifecycle_filter(catalog, state, expected):
    assert set(ids(catalog, lifecycle=state)) == expected


def test_route_filter(catalog):
    assert set(ids(catalog, route="eyes")) == {"seer", "old"}
    assert set(ids(catalog, route="pam")) == {"cheap", "seer"}


def test_filters_combine(catalog):
    assert ids(catalog, capability="tools", route="eyes", lifecycle="active") == ["seer"]
    assert ids(catalog, capability="vision", provider="openai") == []
    assert set(ids(catalog, capability="streaming", provider="google", route="eyes")) == {"old"}


@pytest.mark.parametrize(
    "param, value",
    [
        ("capability", "telepathy"),
        ("capability", "tools,"),
        ("capability", ""),
        ("provider", "nobody"),
        ("provider", ""),
        ("lifecycle", "zombie"),
        ("route", "nowhere"),
        ("route", ""),
    ],
)
def test_an_unknown_filter_value_is_a_400_naming_the_parameter(catalog, param, value):
    response = read(catalog, LIST, **{param: value})

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert repr(value)[1:-1] in body["error"]["message"] and body["request_id"]


def test_the_detail_takes_the_id_with_or_without_its_provider(catalog):
    plain = detail(catalog, "org/vendor-1.5")
    qualified = detail(catalog, "sim-openai-compatible/org/vendor-1.5")

    assert plain == qualified
    assert plain["qualified_id"] == "sim-openai-compatible/org/vendor-1.5"
    assert plain["capabilities"]["tools"] is False and plain["capabilities"]["streaming"] is False
    assert plain["routes"] == []


@pytest.mark.parametrize("model_id", ["nothing", "sim-openai/seer", "cheap/extra", "seer.v2"])
def test_an_unknown_model_is_a_404_in_the_native_shape(catalog, model_id):
    response = read(catalog, f"{LIST}{model_id}/")

    assert response.status_code == 404
    body = response.json()
    assert body["error"]["type"] == "not_found" and model_id in body["error"]["message"]
    assert body["request_id"] == response["X-Request-ID"]


def test_the_detail_shows_the_lifecycle_of_a_retiring_model(catalog):
    old = detail(catalog, "old")

    assert old["lifecycle"] == {
        "state": "retiring_soon",
        "deprecated_on": (TODAY - timedelta(days=100)).isoformat(),
        "retires_on": (TODAY + timedelta(days=10)).isoformat(),
        "successor": "seer",
        "note": "Announced by the provider.",
    }
    assert old["routes"] == [{"route": "eyes", "position": 1, "enabled": True}]
    assert detail(catalog, "gone")["lifecycle"]["state"] == "retired"


def test_the_detail_shows_the_live_statistics_of_the_ledger(catalog, sim):
    for _ in range(3):
        assert catalog.chat({"message": "Hi", "route": "pam"}).status_code == 200
    rows = list(UsageRecord.objects.filter(model="cheap"))
    assert len(rows) == 3

    stats = detail(catalog, "cheap")["stats"]

    latencies = sorted(r.latency_ms for r in rows)
    assert stats["requests"] == 3 and stats["successes"] == 3 and stats["success_rate"] == 1.0
    assert stats["p50_ms"] == statistics.median(latencies) and stats["p95_ms"] == percentile(latencies, 95)
    assert stats["ttft_p50_ms"] is None  # no streams
    assert stats["cost_per_request"] == pytest.approx(float(sum(r.cost_usd for r in rows) / 3))
    assert stats["cost_per_request"] > 0 and stats["window_seconds"] == 900
    assert detail(catalog, "seer")["stats"]["requests"] == 0  # the fallback was never needed


def test_a_failing_model_shows_its_success_rate_and_health(catalog, sim):
    sim.set_fault("cheap", status=500, times=1)
    for _ in range(2):  # the first fails over to seer; cheap then cools down, seer answers
        assert catalog.chat({"message": "Hi", "route": "pam"}).status_code == 200
    cheap_rows = UsageRecord.objects.filter(model="cheap")
    assert [r.outcome for r in cheap_rows] != ["ok"] and cheap_rows.count() == 1

    models = {m["id"]: m for m in read(catalog, LIST).json()["models"]}

    cheap, seer = models["cheap"], models["seer"]
    assert (cheap["stats"]["requests"], cheap["stats"]["successes"], cheap["stats"]["success_rate"]) == (1, 0, 0.0)
    assert cheap["stats"]["p50_ms"] is None  # latencies are of successful attempts
    assert cheap["health"] == {"state": "cooling_down", "available": False}
    assert (seer["stats"]["requests"], seer["stats"]["success_rate"]) == (2, 1.0)


def test_reads_need_a_valid_key(catalog):
    for path in (LIST, f"{LIST}cheap/"):
        for key in (False, "pam_not-a-key"):
            response = read(catalog, path, key=key)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
            assert response["WWW-Authenticate"] == "Bearer"


def test_a_route_restricted_key_sees_every_model_but_only_its_routes(catalog):
    from modelhub.models import Route

    _, limited = api_key_create(name="eyes-only", routes=[Route.objects.get(name="eyes")])

    assert set(ids(catalog, key=limited)) == {"cheap", "seer", "old", "gone", "org/vendor-1.5"}
    assert detail(catalog, "seer", key=limited)["routes"] == [{"route": "eyes", "position": 0, "enabled": True}]
    assert detail(catalog, "cheap", key=limited)["routes"] == []
    # A route it may not use answers as an unknown one: the key cannot tell which routes exist.
    forbidden, unknown = read(catalog, LIST, key=limited, route="pam"), read(catalog, LIST, key=limited, route="zzz")
    assert forbidden.status_code == unknown.status_code == 400
    assert forbidden.json()["error"]["message"].replace("pam", "zzz") == unknown.json()["error"]["message"]


def test_a_staff_key_sees_every_route(catalog, django_user_model):
    from modelhub.models import Route

    staff = django_user_model.objects.create_user("ops", is_staff=True)
    _, key = api_key_create(name="ops", user=staff, routes=[Route.objects.get(name="eyes")])

    assert set(ids(catalog, key=key, route="pam")) == {"cheap", "seer"}


def test_a_repeated_read_makes_no_database_query(catalog, django_assert_num_queries):
    ids(catalog)  # builds the snapshot and reads the stored fields once
    runtime().stats.read()

    with django_assert_num_queries(0):
        assert len(ids(catalog, capability="tools")) == 4
        assert detail(catalog, "old")["lifecycle"]["note"] == "Announced by the provider."


def test_a_model_change_is_read_on_the_next_request(catalog):
    assert detail(catalog, "old")["lifecycle"]["note"] == "Announced by the provider."
    model = AIModel.objects.get(model_id="old")
    model.lifecycle_note, model.supports_vision = "Moved up by the provider.", True
    model.save()  # bumps the configuration version

    old = detail(catalog, "old")

    assert old["lifecycle"]["note"] == "Moved up by the provider." and old["capabilities"]["vision"] is True
