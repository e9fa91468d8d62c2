"""The admin API: config, set-primary, reload, available, health; staff only."""

import pytest

from modelhub.models import ConfigChange, ModelHealth
from tests.factories import STAFF_SECRET, USER_SECRET, ModelHealthFactory, staff_and_user_keys

BASE = "/api/v1/admin/models/"
ENDPOINTS = [("get", "config"), ("post", "set-primary"), ("post", "reload"), ("get", "available"), ("get", "health")]


@pytest.fixture
def keys(db, django_user_model):
    return staff_and_user_keys(django_user_model)


@pytest.fixture
def chain(hub, keys):
    primary, fallback = hub.model("primary-m", "anthropic"), hub.model("fallback-m", "google")
    spare = hub.model("spare-m", "openai", description="Spare capacity")
    hub.route("pam", [primary, fallback])
    return primary, fallback, spare


def call(client, method, path, body=None, secret=STAFF_SECRET, **params):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    if method == "get":
        return client.get(BASE + path, params, headers=headers)
    return client.post(BASE + path, body or {}, content_type="application/json", headers=headers)


# --- who may call ------------------------------------------------------------------


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_without_credentials_is_401(client, keys, method, path):
    response = call(client, method, path, secret=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_non_staff_key_is_403(client, keys, method, path):
    response = call(client, method, path, secret=USER_SECRET)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_wrong_key_is_401(client, keys):
    assert call(client, "get", "config", secret="pam_nope").status_code == 401


def test_non_staff_session_is_403(client, keys):
    client.force_login(keys[1])
    assert client.get(BASE + "config").status_code == 403


def test_staff_session_may_call(client, chain, keys):
    client.force_login(keys[0])
    assert client.get(BASE + "config").status_code == 200


# --- config ------------------------------------------------------------------------


def test_config_gives_primary_fallbacks_and_health(client, chain):
    primary, fallback, _ = chain
    ModelHealthFactory(model=fallback, cooling_down=True)
    body = call(client, "get", "config").json()
    assert body["primary_model"]["id"] == "primary-m"
    assert body["primary_model"]["config"]["provider"] == primary.provider.name
    assert body["primary_model"]["config"]["cost_per_1m_input"] == 3.0
    assert [m["id"] for m in body["fallback_models"]] == ["fallback-m"]
    assert body["fallback_models"][0]["healthy"] is False
    assert (body["total_models"], body["healthy_models"]) == (2, 1)
    assert body["overrides"] == [] and body["override"] is None


def test_config_of_an_unknown_route_is_404(client, chain):
    response = call(client, "get", "config", route="nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]["message"]


def test_config_shows_the_environment_override_in_force(client, chain, monkeypatch):
    monkeypatch.setenv("FORCE_MODEL", "spare-m")
    body = call(client, "get", "config").json()
    assert body["primary_model"]["id"] == "spare-m" and body["fallback_models"] == []
    assert body["overrides"] == ["FORCE_MODEL=spare-m (the only model, every route)"]
    assert [item["model"].split("/")[1] for item in body["stored_chain"]] == ["primary-m", "fallback-m"]


# --- set-primary -------------------------------------------------------------------


def test_set_primary_is_obeyed_by_the_next_chat_and_recorded(client, hub, chain):
    assert hub.chat().json()["model"] == "primary-m"
    response = call(client, "post", "set-primary", {"model_id": "spare-m"})
    assert response.status_code == 200
    body = response.json()
    assert body["primary_model"]["id"] == "spare-m"
    assert [m["id"] for m in body["fallback_models"]] == ["primary-m", "fallback-m"]
    assert body["update_env"] is False and "survives restarts" in body["note"]
    assert (hub.chat().json()["model"], hub.chat().json()["source"]) == ("spare-m", "primary")
    change = ConfigChange.objects.get(action="set_primary")
    assert (change.actor, change.source, change.route) == ("ops (key ops-key)", "api", "pam")
    assert [i["model"].split("/")[1] for i in change.after["chain"]] == ["spare-m", "primary-m", "fallback-m"]


def test_set_primary_accepts_provider_slash_model(client, chain):
    _, fallback, _ = chain
    response = call(
        client, "post", "set-primary", {"model_id": f"{fallback.provider.name}/fallback-m", "update_env": True}
    )
    assert response.json()["primary_model"]["id"] == "fallback-m"
    assert response.json()["update_env"] is True


@pytest.mark.parametrize(
    "body,param,text",
    [
        ({"model_id": "no-such-model"}, "model_id", "Unknown model"),
        ({}, "model_id", "required"),
        ({"model_id": "spare-m", "update_env": "perhaps"}, "update_env", "valid boolean"),
        ({"model_id": "spare-m", "route": "not a slug"}, "route", "slug"),
    ],
)
def test_set_primary_rejects_bad_input_with_400(client, chain, body, param, text):
    response = call(client, "post", "set-primary", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert text in error["message"]


def test_set_primary_of_a_disabled_model_is_400_with_the_reason(client, chain):
    _, _, spare = chain
    spare.enabled = False
    spare.save()
    response = call(client, "post", "set-primary", {"model_id": "spare-m"})
    assert response.status_code == 400
    assert "is disabled" in response.json()["error"]["message"]


def test_set_primary_on_an_unknown_route_is_404(client, chain):
    assert call(client, "post", "set-primary", {"model_id": "spare-m", "route": "nope"}).status_code == 404


def test_set_primary_with_malformed_json_is_400(client, chain):
    response = client.post(
        BASE + "set-primary",
        "{nope",
        content_type="application/json",
        headers={"Authorization": f"Bearer {STAFF_SECRET}"},
    )
    assert response.status_code == 400


def test_set_primary_under_an_override_warns_that_the_override_wins(client, chain, monkeypatch):
    monkeypatch.setenv("DEFAULT_PAM_MODEL", "fallback-m")
    body = call(client, "post", "set-primary", {"model_id": "spare-m"}).json()
    assert body["primary_model"]["id"] == "fallback-m"
    assert "DEFAULT_PAM_MODEL" in body["warning"]


# --- reload ------------------------------------------------------------------------


def test_reload_with_force_ends_every_cooldown(client, hub, chain, sim):
    sim.set_fault("primary-m", status=500, times=1)
    assert hub.chat().json()["model"] == "fallback-m"
    assert hub.chat().json()["model"] == "fallback-m"  # primary cooling down
    body = call(client, "post", "reload", {"force": True}).json()
    assert body["reloaded"] is True and body["cooldowns_cleared"] == 1
    assert hub.chat().json()["model"] == "primary-m"
    assert ConfigChange.objects.filter(action="reload", source="api").exists()


def test_reload_without_force_keeps_cooldowns(client, hub, chain, sim):
    sim.set_fault("primary-m", status=500, times=1)
    hub.chat()
    body = call(client, "post", "reload", {"force": False}).json()
    assert body["cooldowns_cleared"] == 0
    assert hub.chat().json()["model"] == "fallback-m"


def test_reload_rereads_the_environment(client, hub, chain, monkeypatch):
    assert hub.chat().json()["model"] == "primary-m"
    monkeypatch.setenv("PAM_PRIMARY_MODEL", "spare-m")
    body = call(client, "post", "reload").json()
    assert body["overrides"] == {"pam": "PAM_PRIMARY_MODEL=spare-m (primary)"}
    assert hub.chat().json()["model"] == "spare-m"


def test_reload_rejects_a_non_boolean_force(client, chain):
    response = call(client, "post", "reload", {"force": "later"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "force"


# --- available and health -----------------------------------------------------------


def test_available_lists_enabled_models_with_prices(client, chain):
    _, fallback, spare = chain
    fallback.enabled = False
    fallback.save()
    models = {m["model_id"]: m for m in call(client, "get", "available").json()}
    assert "fallback-m" not in models
    assert models["spare-m"]["provider"] == spare.provider.name
    assert (models["spare-m"]["cost_per_1m_input"], models["spare-m"]["cost_per_1m_output"]) == (3.0, 15.0)
    assert models["spare-m"]["description"] == "Spare capacity"
    assert (models["primary-m"]["route_position"], models["spare-m"]["route_position"]) == (0, None)


def test_health_reports_state_cooldown_last_error_rate_and_stats(client, chain):
    primary, fallback, _ = chain
    ModelHealthFactory(model=fallback, cooling_down=True)
    rows = {m["model_id"]: m for m in call(client, "get", "health").json()}
    assert rows["primary-m"]["is_healthy"] is True and rows["primary-m"]["state"] == "healthy"
    cooling = rows["fallback-m"]
    assert (cooling["is_healthy"], cooling["state"]) == (False, ModelHealth.State.COOLING_DOWN)
    assert cooling["cooldown_until"] is not None
    assert cooling["last_error"] == {"kind": "rate_limited", "message": "429 Too Many Requests"}
    assert cooling["success_rate"] == 0.9
    assert cooling["stats"] == {
        "window_seconds": 900,
        "requests": 0,
        "successes": 0,
        "success_rate": None,
        "p50_ms": None,
        "p95_ms": None,
        "ttft_p50_ms": None,
        "cost_per_request": None,
    }  # no chat in the window (tests/test_stats.py shows the figures)
