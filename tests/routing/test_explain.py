"""The routing explanation: in the native answer (``routing``), behind
``x-modelhub-explain: 1`` on /v1 (``x-modelhub-routing``), and compact in the ledger."""

from decimal import Decimal

import orjson
import pytest

from modelhub.models import Route, UsageRecord

COMPLEX = (
    "Design a distributed rate limiter for a multi-region API gateway. First analyse the trade-offs "
    "between token bucket and sliding window algorithms, then write the Python implementation with "
    "Redis Lua scripts, explain the consistency guarantees step by step:\n```python\ndef allow(key):\n    pass\n```"
)


def _chain(hub, *kinds):
    models = [hub.model(f"m{i}-{kind}", kind) for i, kind in enumerate(kinds)]
    hub.route("pam", models)
    return models


def test_a_plain_request_explains_its_order_and_leaves_the_ledger_bare(hub, sim):
    primary, fallback = _chain(hub, "anthropic", "openai")
    routing = hub.chat().json()["routing"]
    assert routing == {
        "route": "pam",
        "chain_route": "pam",
        "override": None,
        "strategy": "priority",
        "arm": "stable",
        "order": [primary.model_id, fallback.model_id],
        "skipped": [],
    }
    assert UsageRecord.objects.get().routing is None


def test_a_cooling_model_is_named_with_its_reason_in_the_answer_and_the_ledger(hub, sim):
    primary, fallback = _chain(hub, "openai", "google")
    sim.set_fault(primary.model_id, status=500, times=1)
    hub.chat()  # the primary fails once and cools down
    body = hub.chat().json()
    assert body["model"] == fallback.model_id
    [skipped] = body["routing"]["skipped"]
    assert skipped["model"] == primary.model_id
    assert skipped["reason"].startswith("cooling down until ")
    row = UsageRecord.objects.get(request_id=body["request_id"])
    assert row.routing == {"skipped": [[primary.model_id, skipped["reason"]]]}


def test_an_incapable_model_and_the_override_are_explained(hub, sim, monkeypatch):
    blind, able = hub.model("blind", "openai", supports_tools=False), hub.model("able", "anthropic")
    hub.route("pam", [able, blind])
    monkeypatch.setenv("DEFAULT_PAM_MODEL", "blind")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = hub.chat({"message": "Hi", "tools": tools}).json()
    routing = body["routing"]
    assert body["model"] == "able"
    assert routing["override"].startswith("DEFAULT_PAM_MODEL=blind")
    assert routing["order"] == ["blind", "able"]
    assert routing["skipped"] == [{"model": "blind", "reason": "no tool support"}]
    assert UsageRecord.objects.get(request_id=body["request_id"]).routing == {
        "override": routing["override"],
        "skipped": [["blind", "no tool support"]],
    }


def test_a_complexity_route_explains_its_tier(hub, sim):
    cheap = hub.model("cheap", "openai", input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.6"))
    strong = hub.model("strong", "anthropic")
    simple, complex_ = hub.route("simple-chain", [cheap]), hub.route("strong-chain", [strong])
    Route.objects.filter(name="hybrid").delete()
    Route.objects.create(name="hybrid", strategy="complexity", simple_route=simple, complex_route=complex_)
    routing = hub.chat({"message": COMPLEX, "route": "hybrid"}).json()["routing"]
    assert (routing["route"], routing["chain_route"], routing["strategy"]) == ("hybrid", "strong-chain", "complexity")
    assert routing["tier"] == "complex" and routing["category"] in ("technical", "research")
    assert "code" in routing["signals"] and routing["score"] > 0
    row = UsageRecord.objects.get()
    assert (row.tier, row.routing) == ("complex", {"via": "strong-chain"})


@pytest.mark.parametrize("stream", [False, True])
def test_v1_gives_the_explanation_only_when_asked(hub, sim, stream):
    primary, fallback = _chain(hub, "openai", "anthropic")
    sim.set_fault(primary.model_id, status=503, times=1)
    body = {"model": "pam", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    headers = {"Authorization": f"Bearer {hub.key}"}
    plain = hub.client.post("/v1/chat/completions", data=body, content_type="application/json", headers=headers)
    assert "x-modelhub-routing" not in plain.headers  # it failed over: the primary now cools down
    asked = hub.client.post(
        "/v1/chat/completions",
        data=body,
        content_type="application/json",
        headers={**headers, "x-modelhub-explain": "1"},
    )
    routing = orjson.loads(asked.headers["x-modelhub-routing"])
    assert [s["model"] for s in routing["skipped"]] == [primary.model_id]
    assert routing["skipped"][0]["reason"].startswith("cooling down until")
    assert [(a["model"], a["outcome"]) for a in routing["attempts"]] == [
        (fallback.model_id, "streaming" if stream else "ok")
    ]
    for response in (plain, asked):
        response.close()
