"""The rollouts admin API: start, list, read, change, pause, resume, advance, roll back and
promote; staff only; 4xx with the field at fault on bad input; every change audited and
obeyed by the next request."""

import orjson
import pytest

from modelhub.models import Alert, ConfigChange, Rollout, Route
from tests.factories import STAFF_SECRET, USER_SECRET, staff_and_user_keys
from tests.rollouts.conftest import ask, on_arm

BASE = "/api/v1/admin/rollouts/"
ENDPOINTS = [
    ("get", ""),
    ("post", ""),
    ("get", "{id}/"),
    ("patch", "{id}/"),
    *[("post", f"{{id}}/{action}") for action in ("pause", "resume", "advance", "rollback", "promote")],
]


@pytest.fixture
def keys(db, django_user_model):
    return staff_and_user_keys(django_user_model)


def call(client, method, path, body=None, secret=STAFF_SECRET, **params):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    if method == "get":
        return client.get(BASE + path, params, headers=headers)
    data = b"" if body is None else orjson.dumps(body)
    return client.generic(method.upper(), BASE + path, data, "application/json", headers=headers)


def create(client, **body):
    response = call(client, "post", "", {"route": "pam", "candidate": "cand-m", **body})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_staff_only(client, keys, models, method, path):
    rollout = Rollout.objects.create(route=Route.objects.get(name="pam"), candidate=models[2])
    path = path.format(id=rollout.pk)

    anonymous = call(client, method, path, {}, secret=None)
    user = call(client, method, path, {}, secret=USER_SECRET)

    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"
    assert user.status_code == 403 and user.json()["error"]["type"] == "permission_error"
    assert Rollout.objects.get().phase == "shadow" and ConfigChange.objects.count() == 0


def test_start_a_shadow_rollout(client, keys, models):
    body = create(client)

    assert body["route"] == "pam" and body["candidate"] == {"model_id": "cand-m", "provider": "sim-anthropic"}
    assert (body["phase"], body["weight"], body["step_weights"]) == ("shadow", 0, [1, 5, 10, 25, 50, 100])
    assert body["created_by"] == "ops (key ops-key)"
    change = ConfigChange.objects.get(action="rollout_start")
    assert (change.source, change.route, change.before, change.after["phase"]) == ("api", "pam", None, "shadow")


def test_a_started_canary_is_obeyed_by_the_next_request(client, hub, keys, models):
    body = create(client, phase="canary", step_weights=[100], min_requests=1000)
    assert (body["phase"], body["step"], body["weight"]) == ("canary", 0, 100)

    answer = ask(hub)

    assert (answer["model"], answer["routing"]["arm"], answer["routing"]["rollout"]) == ("cand-m", "canary", body["id"])


def test_list_and_filter(client, keys, models):
    ended = create(client)
    call(client, "post", f"{ended['id']}/rollback", {})
    running = create(client, phase="canary")

    listed = call(client, "get", "").json()
    active = call(client, "get", "", active="true").json()
    rolled_back = call(client, "get", "", phase="rolled_back", route="pam").json()

    assert [r["id"] for r in listed] == [running["id"], ended["id"]]
    assert [r["id"] for r in active] == [running["id"]]
    assert [r["id"] for r in rolled_back] == [ended["id"]]
    assert [r["id"] for r in call(client, "get", "", active="false").json()] == [ended["id"]]
    assert call(client, "get", "", phase="gone").status_code == 400


def test_read_says_what_the_analysis_would_decide_now(client, hub, keys, models):
    rollout = create(client, phase="canary", step_weights=[100], min_requests=5)
    ask(hub)

    body = call(client, "get", f"{rollout['id']}/").json()

    analysis = body["analysis"]
    assert (analysis["action"], analysis["requests"], analysis["failures"]) == ("hold", 1, 0)
    assert analysis["reason"] == "1 of the 5 canary requests at step 1 (100%) needed."
    assert analysis["stable_model"] == "sim-openai/stable-m"
    assert analysis["candidate_stats"]["requests"] == 1
    call(client, "post", f"{rollout['id']}/pause", {})
    assert call(client, "get", f"{rollout['id']}/").json()["analysis"] is None


def test_change_settings_while_it_runs(client, keys, models):
    rollout = create(client, phase="canary", step_weights=[10, 20, 100])
    call(client, "post", f"{rollout['id']}/advance", {})

    response = call(client, "patch", f"{rollout['id']}/", {"step_weights": [30, 60, 100], "min_requests": 7})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["step"], body["weight"], body["min_requests"]) == (1, 60, 7)
    change = ConfigChange.objects.get(action="rollout_change")
    assert change.before == {"step_weights": [10, 20, 100], "weight": 20.0, "min_requests": 50}


def test_pause_resume_advance(client, hub, keys, models):
    rollout = create(client, phase="canary", step_weights=[50, 100], min_requests=1000)
    (sticky,) = on_arm(Rollout.objects.get(), canary=True)
    path = f"{rollout['id']}/"

    paused = call(client, "post", path + "pause", {"reason": "provider incident"}).json()
    assert (paused["phase"], paused["weight"], paused["reason"]) == ("paused", 0, "provider incident")
    assert ask(hub, conversation_id=sticky)["routing"]["arm"] == "stable"
    assert call(client, "post", path + "advance", {}).status_code == 409

    resumed = call(client, "post", path + "resume", {}).json()
    assert (resumed["phase"], resumed["step"], resumed["weight"]) == ("canary", 0, 50)
    assert ask(hub, conversation_id=sticky)["routing"]["arm"] == "canary"

    advanced = call(client, "post", path + "advance", {}).json()
    assert (advanced["phase"], advanced["step"], advanced["weight"]) == ("canary", 1, 100)
    assert call(client, "post", path + "resume", {}).status_code == 409


def test_a_paused_shadow_rollout_resumes_in_shadow(client, keys, models):
    rollout = create(client)
    call(client, "post", f"{rollout['id']}/pause", {})

    assert call(client, "post", f"{rollout['id']}/resume", {}).json()["phase"] == "shadow"


def test_promote_makes_the_candidate_the_primary(client, hub, keys, models):
    rollout = create(client)

    body = call(client, "post", f"{rollout['id']}/promote", {"reason": "benchmarks are in"}).json()

    assert (body["phase"], body["reason"]) == ("promoted", "benchmarks are in") and body["ended_at"]
    assert ask(hub)["model"] == "cand-m"
    assert ConfigChange.objects.filter(action="set_primary", source="api", route="pam").count() == 1
    assert call(client, "post", f"{rollout['id']}/rollback", {}).status_code == 409
    assert call(client, "patch", f"{rollout['id']}/", {"min_requests": 3}).status_code == 409


def test_rollback_by_hand_raises_no_alert(client, hub, keys, models):
    rollout = create(client, phase="canary", step_weights=[100])

    body = call(client, "post", f"{rollout['id']}/rollback", {}).json()

    assert (body["phase"], body["reason"]) == ("rolled_back", "Rolled back by ops (key ops-key).")
    assert ask(hub)["model"] == "stable-m"
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    "body,param",
    [
        ({"candidate": "nope"}, "candidate"),
        ({"candidate": "stable-m"}, "candidate"),  # already the primary
        ({"candidate": 7}, "candidate"),
        ({"phase": "promoted"}, "phase"),
        ({"step_weights": [10, 5]}, "step_weights"),
        ({"step_weights": []}, "step_weights"),
        ({"step_weights": [0, 100]}, "step_weights"),
        ({"step_weights": "1,5"}, "step_weights"),
        ({"min_requests": "10"}, "min_requests"),
        ({"min_requests": 0}, "min_requests"),
        ({"max_error_rate": 2}, "max_error_rate"),
        ({"shadow_percent": True}, "shadow_percent"),
        ({"shadow_budget_usd": -1}, "shadow_budget_usd"),
        ({"route": "not a slug"}, "route"),
        ({"route": ""}, "route"),
    ],
)
def test_bad_input_is_400_naming_the_field(client, keys, models, body, param):
    response = call(client, "post", "", {"route": "pam", "candidate": "cand-m", **body})

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not Rollout.objects.exists()


def test_an_unknown_route_or_rollout_is_404(client, keys, models):
    assert call(client, "post", "", {"route": "nowhere", "candidate": "cand-m"}).status_code == 404
    assert call(client, "get", "999/").status_code == 404
    assert call(client, "post", "999/pause", {}).status_code == 404
    assert call(client, "get", "nope/").status_code == 404


def test_a_second_active_rollout_on_a_route_is_409(client, keys, models):
    create(client)
    response = call(client, "post", "", {"route": "pam", "candidate": "spare-m"})

    assert response.status_code == 409
    assert "active rollout already" in response.json()["error"]["message"]


def test_a_body_that_is_not_json_is_415(client, keys, models):
    headers = {"Authorization": f"Bearer {STAFF_SECRET}"}
    response = client.post(BASE, "route=pam", content_type="application/x-www-form-urlencoded", headers=headers)
    assert response.status_code == 415


def test_an_ambiguous_candidate_names_its_provider(client, hub, keys, models):
    hub.model("cand-m", "openai")
    response = call(client, "post", "", {"route": "pam", "candidate": "cand-m"})
    assert response.status_code == 400 and "provider/model_id" in response.json()["error"]["message"]

    assert create(client, candidate="sim-anthropic/cand-m")["candidate"]["provider"] == "sim-anthropic"


def test_a_disabled_candidate_is_enabled_as_it_starts(client, keys, models):
    candidate = models[2]
    candidate.enabled = False
    candidate.save()

    create(client)

    candidate.refresh_from_db()
    assert candidate.enabled
    assert ConfigChange.objects.filter(action="enable", target="cand-m").exists()
