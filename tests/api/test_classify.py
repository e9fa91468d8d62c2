"""``POST /api/v1/pam/classify``: the classifier's verdict on a native chat body and the
route it would take (a complexity route's simple or complex route), with the chat's key,
permissions, limits and errors, and without calling a model or writing the ledger."""

from __future__ import annotations

import base64

import orjson
import pytest

from modelhub.models import Route, UsageRecord
from modelhub.runtime import runtime
from modelhub.services import api_key_create
from tests.routing.test_classifier import RATE_LIMITER

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
SIMPLE = "Hi, what time is it?"


@pytest.fixture
def hybrid(hub):
    """Route "hybrid" (complexity): simple requests to "cheap-chain", complex ones to
    "strong-chain"; route "pam" (priority) answered by "only"."""
    cheap, strong = hub.model("cheap", "openai"), hub.model("strong", "anthropic")
    simple, complex_ = hub.route("cheap-chain", [cheap]), hub.route("strong-chain", [strong])
    hub.route("pam", [hub.model("only", "openai")])
    Route.objects.filter(name="hybrid").delete()
    Route.objects.create(name="hybrid", strategy="complexity", simple_route=simple, complex_route=complex_)
    return hub


def classify(hub, body, *, key=None):
    headers = {} if key is False else {"Authorization": f"Bearer {key or hub.key}"}
    response = hub.client.post(
        "/api/v1/pam/classify", data=orjson.dumps(body), content_type="application/json", headers=headers
    )
    runtime().ledger.flush()
    return response


def verdict(hub, body) -> dict:
    response = classify(hub, body)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_simple_request_would_take_the_simple_route(hybrid, sim):
    body = verdict(hybrid, {"message": SIMPLE, "route": "hybrid"})

    assert (body["tier"], body["category"], body["score"], body["route"]) == ("simple", "simple", 0.0, "cheap-chain")
    assert set(body) == {"tier", "category", "score", "signals", "route"} and "simple" in body["signals"]
    assert sim.calls == [] and not UsageRecord.objects.exists()  # no model called, nothing recorded


def test_a_complex_request_would_take_the_complex_route(hybrid, sim):
    body = verdict(hybrid, {"message": RATE_LIMITER, "route": "hybrid"})

    assert (body["tier"], body["category"], body["route"]) == ("complex", "technical", "strong-chain")
    assert body["score"] == 1.0 and {"code", "technical", "reasoning", "multi_step"} <= set(body["signals"])
    assert sim.calls == [] and not UsageRecord.objects.exists()


def test_the_verdict_matches_the_route_the_chat_takes(hybrid):
    for text in (SIMPLE, RATE_LIMITER):
        predicted = verdict(hybrid, {"message": text, "route": "hybrid"})
        answered = hybrid.chat({"message": text, "route": "hybrid"}).json()

        assert answered["route"] == predicted["route"]
        assert UsageRecord.objects.filter(score=predicted["score"], tier=predicted["tier"]).count() == 1


def test_the_routes_threshold_and_classifier_config_apply(hybrid):
    Route.objects.filter(name="hybrid").update(complexity_threshold=0.0)
    Route.objects.get(name="hybrid").save()  # a save moves the config version, as admin's would

    assert verdict(hybrid, {"message": SIMPLE, "route": "hybrid"})["route"] == "strong-chain"

    route = Route.objects.get(name="hybrid")
    route.complexity_threshold, route.classifier_config = None, {"keywords": {"technical": ["campground"]}}
    route.save()
    body = verdict(hybrid, {"message": "Which campground is open?", "route": "hybrid"})

    assert "technical" in body["signals"] and body["route"] == "cheap-chain"


def test_a_priority_route_is_classified_with_its_own_config_and_keeps_its_route(hybrid):
    Route.objects.filter(name="pam").update(classifier_config={"weights": {"nonsense": 1}})
    Route.objects.get(name="pam").save()

    body = verdict(hybrid, {"message": RATE_LIMITER})  # the default route: pam

    assert (body["route"], body["tier"]) == ("pam", "complex")
    assert "config_invalid" in body["signals"]  # a bad config: the defaults, and it says so


def test_an_image_makes_it_multimedia(hybrid):
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": PNG}}]

    body = verdict(hybrid, {"messages": [{"role": "user", "content": content}], "route": "hybrid"})

    assert (body["category"], body["route"]) == ("multimedia", "cheap-chain") and "image" in body["signals"]


def test_the_system_prompt_and_a_model_id_are_taken_as_the_chat_takes_them(hybrid):
    asked = {"message": "Explain how caching works", "system": "You answer about Redis.", "model": "only"}

    body = verdict(hybrid, asked)

    assert body["route"] == "only" and "system" in body["signals"]


@pytest.mark.parametrize(
    "body, key, status, error_type, param",
    [
        ({"message": SIMPLE}, False, 401, "authentication_error", None),
        ({"message": SIMPLE, "route": "nowhere"}, None, 404, "unknown_route", "model"),
        ({"route": "hybrid"}, None, 400, "invalid_request_error", "message"),
        (
            {"message": SIMPLE, "route": "hybrid", "temperature": "hot"},
            None,
            400,
            "invalid_request_error",
            "temperature",
        ),
        ({"message": SIMPLE, "route": "hybrid", "stream": "yes"}, None, 400, "invalid_request_error", "stream"),
    ],
)
def test_errors_are_the_chats(hybrid, body, key, status, error_type, param):
    response = classify(hybrid, body, key=key)
    chat = hybrid.chat(body, key=key)

    assert (response.status_code, chat.status_code) == (status, status)
    error, chat_error = response.json()["error"], chat.json()["error"]
    assert (error["type"], error.get("param")) == (error_type, param)
    assert (chat_error["type"], chat_error.get("param")) == (error_type, param)


def test_a_key_limited_to_another_route_is_refused(hybrid):
    _, secret = api_key_create(name="pam-only", routes=[Route.objects.get(name="pam")])

    response = classify(hybrid, {"message": SIMPLE, "route": "hybrid"}, key=secret)

    assert response.status_code == 403 and response.json()["error"]["type"] == "route_not_allowed"


def test_a_disabled_route_is_unavailable(hybrid):
    route = Route.objects.get(name="hybrid")
    route.enabled = False
    route.save()

    response = classify(hybrid, {"message": SIMPLE, "route": "hybrid"})

    assert response.status_code == 503 and response.json()["error"]["type"] == "route_unavailable"


def test_a_complexity_route_with_nowhere_to_go_is_unavailable(hybrid):
    Route.objects.filter(name__in=["cheap-chain", "strong-chain"]).update(enabled=False)
    Route.objects.get(name="hybrid").save()

    response = classify(hybrid, {"message": SIMPLE, "route": "hybrid"})

    assert response.status_code == 503 and response.json()["error"]["type"] == "route_unavailable"


def test_the_keys_rate_limit_counts_classify_requests(hybrid):
    _, secret = api_key_create(name="slow", rpm_limit=1)

    first = classify(hybrid, {"message": SIMPLE, "route": "hybrid"}, key=secret)
    second = classify(hybrid, {"message": SIMPLE, "route": "hybrid"}, key=secret)

    assert (first.status_code, second.status_code) == (200, 429) and second["Retry-After"]


def test_the_schema_documents_the_endpoint(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/v1/pam/classify"]["post"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = set(schema["components"]["schemas"][answer]["properties"])
    assert fields == {"tier", "category", "score", "signals", "route"}
    assert {"400", "401", "403", "404", "429", "503"} <= set(operation["responses"])
    chat = schema["paths"]["/api/v1/pam/chat"]["post"]
    assert operation["requestBody"] == chat["requestBody"]  # the chat's body
