"""Schemathesis against the served OpenAPI schema (/api/schema/): every API operation,
with a staff key and with a non-staff key, positive and negative (schema-violating) data.

Checks on every response: no 500 and no 5xx the operation does not document (a 503 when
every model of a route failed is documented), the status code and the body conform to the
schema (content type, JSON schema, documented headers), negative data is rejected, and no
planted canary secret (the providers' key, both API key secrets, SECRET_KEY) appears in a
body or a header.

The app is driven in-process through its WSGI handler (``pam.wsgi.application``; the async
chat views run under it like under Django's test client); the providers are the built-in
simulator, with two failing models (a 500, a stream cut mid-way). Streaming answers
(``stream: true``) are fuzzed too: their content type is checked against the documented
``text/event-stream``; their events are checked here (_assert_events), not by schemathesis,
which reads an Open API 3.0 event-stream schema as each event's and so fails every event
against the documented ``type: string``.

CI runs FUZZ_EXAMPLES (default 25) examples per operation and key (about 15 s). A longer run:

    FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 .venv/bin/python -m pytest -q tests/test_fuzz.py   # ~65 s

(FUZZ_RANDOM=1: a fresh random seed each run; without it the examples are fixed.)
"""

from __future__ import annotations

import os
from decimal import Decimal

import orjson
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelhub.conversations import Said, turn_record
from modelhub.providers.base import Message
from modelhub.runtime import runtime
from pam.wsgi import application
from tests.factories import ApiKeyFactory
from tests.hubtools import KEY_ENV, Hub

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))

CANARY_PROVIDER_KEY = "sk-canary-provider-7f3a9c1e5b"
CANARY_SECRET_KEY = "django-canary-secret-key-d41d8cd98f00b204e9800998ecf8427e"
STAFF_SECRET = "pam_canary-staff-5e2b8d1f9a7c"
USER_SECRET = "pam_canary-user-0c6e4a2d8b1f"
CANARIES = (CANARY_PROVIDER_KEY, CANARY_SECRET_KEY, STAFF_SECRET, USER_SECRET)
CONVERSATION = "fuzz-conversation"  # each key has one, so that reading it answers 200 too

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
OPERATIONS = [
    (path, method)
    for path, methods in schema.raw_schema["paths"].items()
    for method in methods
    if method in ("get", "post", "put", "patch", "delete")
]

# Schemathesis' not_a_server_error fails any 5xx; the hub answers a documented 503 when
# every model of a route failed (the failing upstreams below) and 504 past the latency
# budget. _assert_not_a_server_error fails a 500 and any 5xx the operation does not document.
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Known findings, each pinned by an xfail(strict=True) test at the end of this file and
# left out of the fuzzing's negative_data_rejection check until fixed (_not_rejectable).
XFAIL: dict[tuple[str, str, str], str] = {}
# Statuses answered but not documented: status_code_conformance is left out for exactly these.
UNDOCUMENTED: dict[tuple[str, str], set[int]] = {}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _strategy(operation):
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    if not (operation.body or any(True for _ in operation.iter_parameters())):
        return positive  # nothing to break: no parameters, no body
    return st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))


def _assert_no_canary(response) -> None:
    text = response.text
    headers = "\n".join(f"{name}: {', '.join(values)}" for name, values in response.headers.items())
    for canary in CANARIES:
        assert canary not in text, f"canary {canary[:16]}... in the response body"
        assert canary not in headers, f"canary {canary[:16]}... in a response header"


@pytest.fixture
def fuzz_hub(db, sim, simulator, client, monkeypatch, settings, django_user_model):
    settings.SECRET_KEY = CANARY_SECRET_KEY
    monkeypatch.setenv(KEY_ENV, CANARY_PROVIDER_KEY)
    hub = Hub(simulator, client)
    primary, fallback = hub.model("fuzz-primary", "anthropic"), hub.model("fuzz-fallback", "openai")
    hub.model("fuzz-spare", "google")
    hub.route("pam", [primary, fallback])
    # Failing upstreams, so errors (503 with attempts, failover, a stream cut mid-way)
    # are fuzzed and checked for canaries too.
    broken = hub.model("fuzz-broken", "openai_compatible")
    hub.model("fuzz-cut", "openai")
    sim.set_fault("fuzz-broken", status=500)
    sim.set_fault("fuzz-cut", cut_after_chunks=1)
    hub.route("fuzz-failover", [broken, primary])
    staff = django_user_model.objects.create_user("fuzz-ops", is_staff=True)
    user = django_user_model.objects.create_user("fuzz-plain")
    for key in (
        ApiKeyFactory(secret=STAFF_SECRET, user=staff, name="fuzz-staff"),
        ApiKeyFactory(secret=USER_SECRET, user=user, name="fuzz-user"),
    ):
        _conversation_seed(key.pk, runtime().routing.current_sync().models["fuzz-primary"])
    # Django's test client keeps the test's connection open across requests; the WSGI
    # handler would close it (and the test's transaction with it) after each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield hub
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.parametrize("who", ["staff", "user"])
@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_fuzz(fuzz_hub, sim, path, method, who, request):
    reason = XFAIL.get((method, path, who))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    operation = schema[path][method]
    documented = {int(code) for code in schema.raw_schema["paths"][path][method]["responses"] if code.isdigit()}
    headers = {"Authorization": f"Bearer {STAFF_SECRET if who == 'staff' else USER_SECRET}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation), data=st.data())
    def run(case, data):
        if not _is_negative(case) and data.draw(st.sampled_from([True, True, False]), label="steer"):
            _steer(case, data)
        case.headers = {**(case.headers or {}), **headers}
        response = case.call()
        runtime().ledger.flush()
        negative = _is_negative(case) and not _not_rejectable(case)
        checks = CHECKS + ([negative_data_rejection] if negative else [])
        if response.status_code in UNDOCUMENTED.get((method, path), ()):
            checks.remove(status_code_conformance)
        if _is_stream(response):
            # Schemathesis reads an Open API 3.0 event-stream `schema` as the schema of each
            # event ({"event", "data", ...}); ours documents the stream as a string. The
            # events are checked here instead (see _assert_events).
            checks.remove(response_schema_conformance)
            _assert_events(path, response.text)
        case.validate_response(response, checks=checks)
        _assert_not_a_server_error(response, documented)
        _assert_no_canary(response)

    run()
    # The providers were called with the planted key (the canary had something to leak).
    assert all(call.api_key == CANARY_PROVIDER_KEY for call in sim.calls)


def _conversation_seed(key_pk: int, model) -> None:
    """A conversation of the key's (CONVERSATION), with one turn."""
    said = Said("Hello.", (), model, (3, 2), Decimal("0.000039"))
    turn_record(
        key_pk=key_pk,
        conversation_id=CONVERSATION,
        route="pam",
        request_id="0" * 32,
        asked=(Message("user", "Hi"),),
        said=said,
    )


def _assert_not_a_server_error(response, documented: set[int]) -> None:
    status = response.status_code
    assert status < 500 or (status != 500 and status in documented), f"server error {status}: {response.text[:500]}"
    if status >= 500 and response.headers.get("content-type", [""])[0] == "application/json":
        error = orjson.loads(response.content).get("error")  # a hub error, not a crash page
        assert isinstance(error, dict) and error.get("type") != "internal_error", response.text[:500]


def _is_stream(response) -> bool:
    return response.headers.get("content-type", [""])[0].startswith("text/event-stream")


def _assert_events(path: str, text: str) -> None:
    """The stream's events: native ``delta``* then ``done`` or ``error``, JSON data; OpenAI
    ``chat.completion.chunk`` data then ``[DONE]``, or a last ``{"error": ...}``."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields.get("event"), fields.get("data")))
    assert events, "an empty stream"
    if path == "/api/v1/pam/chat":
        assert all(name == "delta" for name, _ in events[:-1]), events
        assert events[-1][0] in ("done", "error"), events
        for _, data in events:
            assert isinstance(orjson.loads(data), dict)
    else:
        datas = [data for _, data in events]
        if datas[-1] == "[DONE]":
            datas.pop()
        else:
            assert "error" in orjson.loads(datas[-1]), events
            datas.pop()
        for data in datas:
            assert orjson.loads(data)["object"] == "chat.completion.chunk", data


def _not_rejectable(case) -> bool:
    """Negative cases the server may rightly accept: a body that is not an object, sent as
    a form: the form encoding cannot carry it (an array becomes an empty form, which is the
    valid "all defaults")."""
    return case.media_type in FORM_TYPES and not isinstance(case.body, dict)


def _blank(message) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return not any(isinstance(part, dict) and str(part.get("text", "")).strip() for part in content)
    return not str(content or "").strip()


def _is_negative(case) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.NEGATIVE


ROUTES = st.sampled_from(
    ["pam", "fuzz-primary", "fuzz-fallback", "sim-google/fuzz-spare", "fuzz-failover", "fuzz-broken", "fuzz-cut"]
)


def _steer(case, data) -> None:
    """Half the valid cases are pointed at what exists (the route "pam", its models), so the
    fuzzing reaches the answers (and streams) and not only the 404 of a random name."""
    path, body = case.operation.path, case.body
    if case.operation.method == "get" and case.query is not None and "route" in case.query:
        case.query["route"] = "pam"
    if path == "/api/v1/pam/conversations/{conversation_id}":
        case.path_parameters["conversation_id"] = CONVERSATION
    if not isinstance(body, dict):
        return
    if path == "/api/v1/pam/chat":
        if "model" in body:
            body["model"] = data.draw(ROUTES, label="model")
            body.pop("route", None)
        else:
            body["route"] = data.draw(ROUTES, label="route")
        # What the schema cannot say: one of message or messages, with some text in it.
        body.pop("messages", None)
        body["message"] = data.draw(st.sampled_from(["Hi", "Tell me a story", "¿Qué tal? 🙂"]), label="message")
        body["stream"] = data.draw(st.booleans(), label="stream")
    elif path == "/v1/chat/completions":
        body["model"] = data.draw(ROUTES, label="model")
        body["stream"] = data.draw(st.booleans(), label="stream")
        if isinstance(body.get("messages"), list):  # at least one user message with text
            body["messages"] = [m for m in body["messages"] if not _blank(m)] + [{"role": "user", "content": "Hi"}]
    elif path == "/api/v1/admin/models/set-primary":
        body["model_id"] = data.draw(st.sampled_from(["fuzz-primary", "fuzz-spare", "sim-openai/fuzz-fallback"]))
        body["route"] = "pam"
    elif "route" in body:
        body["route"] = "pam"


# --- findings of the fuzzing, fixed: pinned here ---------------------------------------


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_blank_route_in_a_form_body_is_400(fuzz_hub, client, content_type):
    headers = {"Authorization": f"Bearer {STAFF_SECRET}"}
    if content_type == "multipart/form-data":
        response = client.post("/api/v1/admin/models/reload", {"route": ""}, headers=headers)
    else:
        response = client.post("/api/v1/admin/models/reload", "route=", content_type=content_type, headers=headers)
    assert response.status_code == 400


def test_blank_route_in_the_query_is_400(fuzz_hub, client):
    headers = {"Authorization": f"Bearer {STAFF_SECRET}"}
    assert client.get("/api/v1/admin/models/config?route=", headers=headers).status_code == 400


@pytest.mark.parametrize("path", ["/api/v1/admin/models/reload", "/api/v1/admin/models/set-primary"])
def test_admin_post_415_is_documented(fuzz_hub, client, path):
    headers = {"Authorization": f"Bearer {STAFF_SECRET}"}
    assert client.post(path, "x", content_type="text/plain", headers=headers).status_code == 415
    assert "415" in schema.raw_schema["paths"][path]["post"]["responses"]
