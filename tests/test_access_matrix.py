"""Access control matrix: every URL the resolver serves, called by every kind of caller,
answers the documented status (README "Calling it", "Admin API", "Metrics") in the
documented error shape. A new endpoint joins ``ROWS`` or ``test_every_url_has_a_row``
fails.

Callers: nobody, a wrong key, a non-staff key allowed every route, a key limited to
another route (the pam route is another key's), a staff user's key, and admin sessions
of a non-staff and of a staff user.

A key never sees another key's usage or limits: the ledger is read only through the
staff-only metrics endpoint, ``/v1/models`` lists only the caller's routes, and no error
body names another key. A conversation is read only by the key that holds it: any other
key gets 404, as for an id that does not exist."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver

from modelhub.models import Conversation, Route, UsageRecord
from modelhub.runtime import runtime
from modelhub.services import api_key_create
from tests.hubtools import KEY_ENV, Hub

ADMIN_SITE = "<admin site>"  # every pattern of the "admin" namespace: one row's rule
CALLERS = ("anonymous", "wrong_key", "key", "other_route_key", "staff_key", "user_session", "staff_session")
WRONG_KEY = "pam_not-a-key-of-this-hub"
CHAT = {"message": "Hi", "route": "pam"}
COMPLETION = {"model": "pam", "messages": [{"role": "user", "content": "Hi"}]}

# Who may call what, as documented.
ANYONE = dict.fromkeys(CALLERS, 200)
A_KEY = {
    **ANYONE,
    "anonymous": 401,
    "wrong_key": 401,
    "other_route_key": 403,
    "user_session": 401,
    "staff_session": 401,
}
ANY_KEY = {**A_KEY, "other_route_key": 200}
OWN_KEY = {**ANY_KEY, "other_route_key": 404, "staff_key": 404}  # another key's conversation: 404
STAFF = {**A_KEY, "key": 403, "other_route_key": 403, "user_session": 403, "staff_session": 200}
STAFF_CREATES = {**STAFF, "staff_key": 201, "staff_session": 201}
STAFF_MISSING = {**STAFF, "staff_key": 404, "staff_session": 404}  # staff get through; rollout 1 does not exist
ADMIN_PAGES = {**dict.fromkeys(CALLERS, 302), "staff_session": 200}  # 302: to the login page
# The operator's pages (modelhub/pages): to the login page without a session, 403 for a
# signed-in user who is not staff; their JSON endpoints refuse everyone but staff with 403.
CONSOLE_PAGES = {**ADMIN_PAGES, "user_session": 403}
CONSOLE_JSON = {**dict.fromkeys(CALLERS, 403), "staff_session": 200}
NOWHERE = dict.fromkeys(CALLERS, 404)
HEALTH = dict.fromkeys(CALLERS, (200, 503))  # 503: database down and no snapshot yet; never 401/403
# OPTIONS describes the input to anyone; a key that is presented is still checked.
DESCRIBE = {**ANYONE, "wrong_key": 401}


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str
    expect: dict
    patterns: tuple = ()  # the resolver patterns this row stands for
    body: dict | None = None


ROWS = [
    Row("admin-index", "get", "/admin/", ADMIN_PAGES, (ADMIN_SITE,)),
    Row("admin-changelist", "get", "/admin/modelhub/route/", ADMIN_PAGES, (ADMIN_SITE,)),
    Row("pam-chat", "post", "/api/v1/pam/chat", A_KEY, ("api/v1/pam/chat",), CHAT),
    Row("pam-chat-options", "options", "/api/v1/pam/chat", DESCRIBE),
    Row("pam-classify", "post", "/api/v1/pam/classify", A_KEY, ("api/v1/pam/classify",), CHAT),
    Row("pam-classify-options", "options", "/api/v1/pam/classify", DESCRIBE),
    Row("pam-hybrid-chat", "post", "/api/v1/pam-hybrid/chat", A_KEY, ("api/v1/pam-hybrid/chat",), CHAT),
    Row("pam-hybrid-health", "get", "/api/v1/pam-hybrid/health", HEALTH, ("api/v1/pam-hybrid/health",)),
    Row("pam-hybrid-metrics", "get", "/api/v1/pam-hybrid/metrics", STAFF, ("api/v1/pam-hybrid/metrics",)),
    Row("completions", "post", "/v1/chat/completions", A_KEY, ("v1/chat/completions",), COMPLETION),
    Row("completions-options", "options", "/v1/chat/completions", DESCRIBE),
    Row("models", "get", "/v1/models", ANY_KEY, ("v1/models",)),
    Row(
        "pam-conversation",
        "get",
        "/api/v1/pam/conversations/mine-1",
        OWN_KEY,
        ("api/v1/pam/conversations/<path:conversation_id>",),
    ),
    Row("models-registry", "get", "/api/v1/models/", ANY_KEY, ("api/v1/models/",)),
    Row("models-registry-detail", "get", "/api/v1/models/only/", ANY_KEY, ("api/v1/models/<path:model_id>/",)),
    Row("admin-config", "get", "/api/v1/admin/models/config", STAFF, ("api/v1/admin/models/config",)),
    Row("admin-available", "get", "/api/v1/admin/models/available", STAFF, ("api/v1/admin/models/available",)),
    Row("admin-health", "get", "/api/v1/admin/models/health", STAFF, ("api/v1/admin/models/health",)),
    Row(
        "admin-set-primary",
        "post",
        "/api/v1/admin/models/set-primary",
        STAFF,
        ("api/v1/admin/models/set-primary",),
        {"model_id": "only", "route": "pam"},
    ),
    Row("admin-reload", "post", "/api/v1/admin/models/reload", STAFF, ("api/v1/admin/models/reload",), {}),
    Row("admin-rollouts", "get", "/api/v1/admin/rollouts/", STAFF, ("api/v1/admin/rollouts/",)),
    Row(
        "admin-rollouts-start",
        "post",
        "/api/v1/admin/rollouts/",
        STAFF_CREATES,
        (),
        {"route": "pam", "candidate": "quick"},
    ),
    Row(
        "admin-rollout", "get", "/api/v1/admin/rollouts/1/", STAFF_MISSING, ("api/v1/admin/rollouts/<int:rollout_id>/",)
    ),
    Row("admin-rollout-change", "patch", "/api/v1/admin/rollouts/1/", STAFF_MISSING, (), {"min_requests": 10}),
    *[
        Row(
            f"admin-rollout-{name}",
            "post",
            f"/api/v1/admin/rollouts/1/{name}",
            STAFF_MISSING,
            (f"api/v1/admin/rollouts/<int:rollout_id>/{name}",),
            {},
        )
        for name in ("pause", "resume", "advance", "rollback", "promote")
    ],
    Row("metrics", "get", "/api/v1/pam/metrics", STAFF, ("api/v1/pam/metrics",)),
    Row("health", "get", "/api/v1/health", HEALTH, ("api/v1/health",)),
    # Prometheus: anyone from loopback (the test client's address) while no metrics token is
    # set; other networks and the token: tests/observability/test_access.py
    Row("prometheus", "get", "/metrics", ANYONE, ("metrics",)),
    Row("schema", "get", "/api/schema/", ANYONE, ("api/schema/",)),
    Row("docs", "get", "/api/docs/", ANYONE, ("api/docs/",)),
    Row("static", "get", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", ANYONE),
    Row("dashboard", "get", "/dashboard/", CONSOLE_PAGES, ("dashboard/",)),
    Row("dashboard-live", "get", "/dashboard/live", CONSOLE_JSON, ("dashboard/live",)),
    Row("dashboard-days", "get", "/dashboard/days/", CONSOLE_PAGES, ("dashboard/days/",)),
    Row("dashboard-route", "get", "/dashboard/routes/pam/", CONSOLE_PAGES, ("dashboard/routes/<str:name>/",)),
    Row(
        "dashboard-model",
        "get",
        "/dashboard/models/sim-openai/only/",
        CONSOLE_PAGES,
        ("dashboard/models/<str:provider>/<path:model_id>/",),
    ),
    Row("playground", "get", "/playground/", CONSOLE_PAGES, ("playground/",)),
    Row("playground-chat", "post", "/playground/chat", CONSOLE_JSON, ("playground/chat",), CHAT),
    Row(
        "playground-fault",
        "post",
        "/playground/fault",
        CONSOLE_JSON,
        ("playground/fault",),
        {"route": "pam", "action": "restore"},
    ),
    Row("unknown-api", "post", "/api/v1/nothing-here", NOWHERE, (), {}),
    Row("unknown-v1", "get", "/v1/nope", NOWHERE),
]
CELLS = [pytest.param(row, caller, id=f"{row.name}-{caller}") for row in ROWS for caller in CALLERS]

NATIVE_TYPES = {401: {"authentication_error"}, 403: {"permission_error", "route_not_allowed"}, 404: {"not_found"}}
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


def resolver_patterns(patterns=None, prefix="", admin=False) -> set[str]:
    """Every URL pattern, as its full route; the admin site's collapse into ADMIN_SITE."""
    found = set()
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= resolver_patterns(entry.url_patterns, route, admin or entry.namespace == "admin")
        elif isinstance(entry, URLPattern):
            found.add(ADMIN_SITE if admin else route)
    return found


@pytest.fixture
def world(db, sim, simulator, client, monkeypatch, django_user_model):
    """Route "pam" and route "other" on the simulator; the callers' keys and users."""
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    hub = Hub(simulator, client)
    hub.route("pam", [hub.model("only", "openai")])
    other = hub.route("other", [hub.model("quick", "google")])
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_route"))
    user = django_user_model.objects.create_user("plain")
    Conversation.objects.create(api_key=hub.key_obj, conversation_id="mine-1")
    return {
        "hub": hub,
        "staff": staff,
        "user": user,
        "secrets": {
            "wrong_key": WRONG_KEY,
            "key": hub.key,
            "other_route_key": api_key_create(name="other-route", routes=[other])[1],
            "staff_key": api_key_create(name="ops-key", user=staff)[1],
        },
    }


def call(client, method, path, body=None, secret=None):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    data = orjson.dumps(body) if body is not None else b""
    response = client.generic(method.upper(), path, data, content_type="application/json", headers=headers)
    runtime().ledger.flush()
    return response


def as_caller(world, client, caller) -> str | None:
    """Signs the client in for a session caller; the caller's key, if it has one."""
    if caller.endswith("_session"):
        client.force_login(world["staff" if caller == "staff_session" else "user"])
    return world["secrets"].get(caller)


def assert_error_shape(response, status, path):
    if response["Content-Type"].startswith("text/html"):  # a console page's 403: admin's look, not an API error
        assert path.startswith(("/dashboard/", "/playground/")) and status == 403
        return
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if path.startswith("/v1/"):
        assert {"message", "type", "param", "code"} <= set(error)
        assert error["type"] == OPENAI_TYPES[status]
    else:
        assert error["type"] in NATIVE_TYPES[status]
    if status == 401:
        assert response["WWW-Authenticate"] == "Bearer"


def test_every_url_has_a_row():
    served, ruled = resolver_patterns(), {p for row in ROWS for p in row.patterns}
    assert served - ruled == set(), "an endpoint without an access rule: add it to ROWS"
    assert ruled - served == set(), "a row for an endpoint that is gone"


@pytest.mark.parametrize("row, caller", CELLS)
def test_caller_gets_the_documented_status(world, client, row, caller):
    secret = as_caller(world, client, caller)

    response = call(client, row.method, row.path, row.body, secret)

    expected = row.expect[caller]
    assert response.status_code in (expected if isinstance(expected, tuple) else (expected,)), response.content
    if response.status_code in (401, 403, 404):
        assert_error_shape(response, response.status_code, row.path)
    elif response.status_code == 302:
        assert response["Location"].startswith("/admin/login/")


@pytest.fixture
def two_keys(world):
    """Key "alpha-team" may use route pam only, key "bravo-team" route other only."""
    alpha = api_key_create(name="alpha-team", routes=[Route.objects.get(name="pam")])
    bravo = api_key_create(name="bravo-team", routes=[Route.objects.get(name="other")])
    return alpha, bravo


def listed(client, secret) -> list[str]:
    response = call(client, "get", "/v1/models", secret=secret)
    assert response.status_code == 200
    return [m["id"] for m in response.json()["data"]]


def test_models_lists_only_the_routes_of_the_callers_key(client, two_keys):
    (_, alpha), (_, bravo) = two_keys

    assert listed(client, alpha) == ["pam"]
    assert listed(client, bravo) == ["other"]


def test_a_key_cannot_read_the_usage_of_another_key(client, two_keys):
    (alpha_obj, alpha), (_, bravo) = two_keys
    assert call(client, "post", "/api/v1/pam/chat", CHAT, alpha).status_code == 200
    assert UsageRecord.objects.filter(api_key=alpha_obj).exists()

    response = call(client, "get", "/api/v1/pam/metrics", secret=bravo)

    assert response.status_code == 403
    assert list(response.json()) == ["error"]  # no figures of alpha's traffic


# A limited key gets 403 for an unknown route too: it cannot tell which routes exist.
BRAVO_ERRORS = [
    pytest.param("post", "/api/v1/pam/chat", CHAT, 403, id="chat-on-alphas-route"),
    pytest.param("post", "/api/v1/pam/chat", {"message": "Hi", "route": "nowhere"}, 403, id="chat-unknown-route"),
    pytest.param("post", "/api/v1/pam/chat", {"route": "other"}, 400, id="chat-bad-input"),
    pytest.param("post", "/api/v1/pam/classify", CHAT, 403, id="classify-on-alphas-route"),
    pytest.param("post", "/v1/chat/completions", COMPLETION, 403, id="completions-on-alphas-route"),
    pytest.param("post", "/v1/chat/completions", {**COMPLETION, "model": "nowhere"}, 403, id="completions-unknown"),
    pytest.param("get", "/api/v1/pam/metrics", None, 403, id="metrics"),
    pytest.param("get", "/api/v1/admin/models/config", None, 403, id="admin-config"),
]


@pytest.mark.parametrize("method, path, body, status", BRAVO_ERRORS)
def test_error_bodies_never_name_another_key(client, two_keys, method, path, body, status):
    (alpha_obj, alpha), (bravo_obj, bravo) = two_keys
    assert call(client, "post", "/api/v1/pam/chat", CHAT, alpha).status_code == 200

    response = call(client, method, path, body, bravo)

    assert response.status_code == status
    for secret_part in (alpha_obj.name, alpha_obj.prefix, alpha, bravo):
        assert secret_part.encode() not in response.content
