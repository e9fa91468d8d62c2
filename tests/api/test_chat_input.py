"""Bad input gets a clear 4xx JSON error, never a 500; good input reaches the model as sent."""

import functools

import orjson
import pytest


@pytest.mark.parametrize(
    "raw, status, param",
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b"{}", 400, "message"),
        (orjson.dumps({"message": ""}), 400, "message"),
        (orjson.dumps({"message": "   "}), 400, "message"),
        (orjson.dumps({"message": 42}), 400, "message"),
        (orjson.dumps({"message": "hi", "messages": [{"role": "user", "content": "hi"}]}), 400, "message"),
        (orjson.dumps({"messages": []}), 400, "messages"),
        (orjson.dumps({"messages": "hi"}), 400, "messages"),
        (orjson.dumps({"messages": ["hi"]}), 400, "messages[0]"),
        (orjson.dumps({"messages": [{"role": "wizard", "content": "hi"}]}), 400, "messages[0].role"),
        (orjson.dumps({"messages": [{"role": "user", "content": None}]}), 400, "messages[0].content"),
        (orjson.dumps({"messages": [{"role": "system", "content": "be brief"}]}), 400, "messages"),
        (orjson.dumps({"message": "hi", "max_tokens": 0}), 400, "max_tokens"),
        (orjson.dumps({"message": "hi", "max_tokens": 10_000_000}), 400, "max_tokens"),
        (orjson.dumps({"message": "hi", "max_tokens": "10"}), 400, "max_tokens"),
        (orjson.dumps({"message": "hi", "max_tokens": True}), 400, "max_tokens"),
        (orjson.dumps({"message": "hi", "temperature": 3}), 400, "temperature"),
        (orjson.dumps({"message": "hi", "temperature": "hot"}), 400, "temperature"),
        (orjson.dumps({"message": "hi", "route": 5}), 400, "route"),
        (orjson.dumps({"message": "hi", "route": ""}), 400, "route"),
        (orjson.dumps({"message": "hi", "model": 7}), 400, "model"),
        (orjson.dumps({"message": "hi", "route": "pam", "model": "only"}), 400, "route"),
        (orjson.dumps({"message": "hi", "system": ["x"]}), 400, "system"),
        (orjson.dumps({"message": "hi", "stream": "yes"}), 400, "stream"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_is_a_clear_400(pam, sim, raw, status, param):
    response = pam.chat(raw=raw)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error.get("param") == param
    assert sim.calls == []


def test_unknown_route_is_404(pam, sim):
    response = pam.chat({"message": "hi", "route": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["error"]["message"]
    assert sim.calls == []


def test_body_over_the_limit_is_413(pam, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "MAX_BODY_BYTES": 1000}
    response = pam.chat({"message": "x" * 2000})
    assert response.status_code == 413
    assert sim.calls == []


@pytest.mark.parametrize("key", [False, "pam_wrong"], ids=["missing", "wrong"])
def test_missing_or_wrong_key_is_401(pam, sim, key):
    response = pam.chat(key=key)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert sim.calls == []


def test_deactivated_key_is_refused_on_the_next_request(pam):
    assert pam.chat().status_code == 200
    pam.key_obj.is_active = False
    pam.key_obj.save()
    assert pam.chat().status_code == 401


def test_get_is_405(pam):
    assert pam.client.get("/api/v1/pam/chat", headers={"Authorization": f"Bearer {pam.key}"}).status_code == 405


def test_answer_carries_metadata(pam, sim):
    response = pam.chat({"message": "hello there", "conversation_id": "c-1"})
    body = response.json()
    assert response.status_code == 200
    assert body["content"] == "Simulated reply from only."
    assert (body["route"], body["source"], body["provider"]) == ("pam", "primary", "sim-openai")
    assert body["usage"] == {"input_tokens": 2, "output_tokens": 4}
    assert body["cost_usd"] == pytest.approx((2 * 3 + 4 * 15) / 1e6)
    assert body["conversation_id"] == "c-1"
    assert response["X-Request-ID"] == body["request_id"]
    assert [a["outcome"] for a in body["attempts"]] == ["ok"]


def test_messages_and_system_reach_the_provider(pam, sim):
    pam.chat(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ],
            "system": "you are PAM",
            "max_tokens": 5000,
            "temperature": 0.5,
        }
    )
    sent = sim.calls[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "you are PAM\n\nbe brief"}
    assert [m["role"] for m in sent["messages"][1:]] == ["user", "assistant", "user"]
    assert sent["max_tokens"] == 100  # clamped to the model's maximum
    assert sent["temperature"] == 0.5


@pytest.mark.parametrize("field", ["route", "model"])
def test_model_id_works_as_a_route_name(pam, sim, field):
    body = pam.chat({"message": "hi", field: "only"}).json()
    assert (body["model"], body["route"]) == ("only", "only")


def test_no_configuration_and_no_database_is_a_clear_503(pam, monkeypatch):
    from django.db import OperationalError

    from modelhub.routing import state

    def database_down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(state, "snapshot_build", database_down)
    response = pam.chat()
    assert response.status_code == 503
    assert "database unavailable" in response.json()["error"]["message"]


BODIES = [
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 5},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "temperature": None, "top_p": 0.5},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "unknown": 1, "seed": 7, "stop": "x"},
    {"messages": [{"role": "user", "content": "hi"}]},  # no model
    {"model": "pam", "messages": []},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "top_p": 2, "seed": "7", "stream": "yes"},
    {"model": "pam", "messages": [{"role": "user", "content": "hi"}], "n": 2, "stream_options": {"x": 1}},
    {"model": 5, "messages": "hi", "max_tokens": 0, "user": "u" * 300},
    {"message": "hi"},
    {"message": "hi", "route": "pam", "max_tokens": 9, "conversation_id": "c1"},
    {"message": "", "stream": 1, "temperature": "hot"},
]


@pytest.mark.parametrize("body", BODIES)
def test_input_serializers_validate_as_drf_does(body):
    """The input serializers pass over optional fields a body does not name instead of
    running each to have it raise SkipField: what they accept and refuse, and how they say
    it, is DRF's own loop's."""
    from rest_framework import serializers

    from modelhub.api.openai_views import CompletionInput
    from modelhub.api.views import ChatInput

    for serializer_class in (CompletionInput, ChatInput):
        fast = serializer_class(context={"default_route": "pam"})
        drf = serializer_class(context={"default_route": "pam"})
        outcomes = []
        for run in (fast.to_internal_value, functools.partial(serializers.Serializer.to_internal_value, drf)):
            try:
                outcomes.append(("ok", run(body)))
            except serializers.ValidationError as exc:
                outcomes.append(("refused", exc.detail))
        assert outcomes[0] == outcomes[1], serializer_class.__name__


@pytest.mark.parametrize("data", [["not", "a", "body"], "text", None])
def test_input_serializers_refuse_what_is_not_a_body_as_drf_does(data):
    from rest_framework import serializers

    from modelhub.api.openai_views import CompletionInput

    refusals = []
    for run in (
        CompletionInput().to_internal_value,
        functools.partial(serializers.Serializer.to_internal_value, CompletionInput()),
    ):
        with pytest.raises(serializers.ValidationError) as refused:
            run(data)
        refusals.append(refused.value.detail)
    assert refusals[0] == refusals[1]


def test_the_shortcut_is_taken_only_for_fields_that_read_their_own_key():
    from rest_framework import serializers

    from modelhub.api.fields import InputSerializer
    from modelhub.api.openai_views import CompletionInput
    from modelhub.api.views import ChatInput

    class Renamed(InputSerializer):
        name = serializers.CharField(source="title", required=False)

    class OwnAbsence(serializers.CharField):
        def get_default(self):
            return "decided here"

    class Decides(InputSerializer):
        name = OwnAbsence(required=False)

    assert CompletionInput()._field_plan() and ChatInput()._field_plan()
    assert Renamed()._field_plan() == () and Renamed().to_internal_value({"name": "x"}) == {"title": "x"}
    assert Decides()._field_plan() == () and Decides().to_internal_value({}) == {"name": "decided here"}
