"""Requests beyond plain text on the native endpoint: how tools, images, tool history and
JSON output are checked; capability routing (models that cannot serve a request skipped
without a call, or a 400 when none can); the universal fallback route; the max-output
default; the Google key alias."""

import base64
import json

import pytest

from modelhub.models import Route
from modelhub.routing.snapshot import api_key_from_env

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


def chat(hub, **body):
    return hub.chat({"messages": ASK_WEATHER, **body})


def error_of(response) -> dict:
    return response.json()["error"]


# -- what is checked --


@pytest.mark.parametrize(
    "body, param",
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": "7"}, "seed"),
        ({"metadata": {"k": 1}}, "metadata"),
    ],
)
def test_bad_options_are_400_naming_the_place(pam, sim, body, param):
    response = chat(pam, **body)
    assert response.status_code == 400, response.content
    assert error_of(response)["param"] == param
    assert sim.calls == []


@pytest.mark.parametrize(
    "messages, param",
    [
        ([{"role": "tool", "tool_call_id": "call_1", "content": "21C"}], "messages[0].tool_call_id"),
        ([{"role": "tool", "content": "21C"}], "messages[0].tool_call_id"),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}]
            + [{"role": "tool", "tool_call_id": "other", "content": "x"}],
            "messages[1].tool_call_id",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": "{}"}}]}],
            "messages[0].tool_calls[0].function.name",
        ),
        ([{"role": "assistant", "content": None}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}], None),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}],
            None,
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]}],
            None,
        ),
        (
            [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}],
            "messages[0].content[0]",
        ),
        ([{"role": "user", "content": [{"type": "audio"}]}], "messages[0].content[0]"),
    ],
)
def test_bad_messages_are_400_naming_the_place(pam, sim, messages, param):
    response = pam.chat({"messages": messages})
    assert response.status_code == 400, response.content
    assert error_of(response)["param"] == (param or "messages[0].content[0].image_url.url")
    assert sim.calls == []


def test_an_image_over_the_limit_is_413(pam, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "MAX_IMAGE_BYTES": 40}
    content = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": PNG}}]
    response = pam.chat({"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 413
    assert "limit per image" in error_of(response)["message"]
    assert sim.calls == []


def test_images_over_the_request_limit_are_413(pam, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "MAX_REQUEST_IMAGE_BYTES": 100}
    image = {"type": "image_url", "image_url": {"url": PNG}}
    response = pam.chat({"messages": [{"role": "user", "content": [image, image]}]})
    assert response.status_code == 413
    assert "per request" in error_of(response)["message"]


# -- capability routing --


def test_a_model_without_tool_support_is_skipped_without_a_call(hub, sim):
    plain, capable = hub.model("no-tools", "openai", supports_tools=False), hub.model("tools", "openai")
    hub.route("pam", [plain, capable])

    body = chat(hub, tools=[WEATHER]).json()

    assert body["model"] == "tools"
    assert body["source"] == "fallback_1"
    assert body["attempts"][0] == {
        "model": "no-tools",
        "provider": "sim-openai",
        "route": "pam",
        "outcome": "skipped",
        "latency_ms": 0,
        "reason": "no tool support",
    }
    assert [c.model for c in sim.calls] == ["tools"]
    assert body["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(body["tool_calls"][0]["function"]["arguments"]) == {"city": "example"}


def test_tool_history_also_needs_tool_support(hub, sim):
    hub.route("pam", [hub.model("no-tools", "openai", supports_tools=False), hub.model("tools", "openai")])
    history = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
    ]
    body = hub.chat({"messages": history}).json()
    assert (body["model"], body["attempts"][0]["reason"]) == ("tools", "no tool support")
    assert "21C" in body["content"]


@pytest.mark.parametrize(
    "fields, body, reason",
    [
        (
            {},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}]},
            "no vision support",
        ),
        (
            {},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}},
            "no JSON schema support",
        ),
        ({"context_window": 1000}, {"max_tokens": 2000}, "context window 1000 below the request's ~2004 tokens"),
    ],
)
def test_each_need_skips_the_models_that_lack_it(hub, sim, fields, body, reason):
    capable = hub.model("capable", "openai", supports_vision=True, supports_json_schema=True)
    hub.route("pam", [hub.model("lacking", "openai", **fields), capable])

    answer = hub.chat({"messages": ASK_WEATHER, **body}).json()

    assert answer["model"] == "capable", answer
    assert answer["attempts"][0]["outcome"] == "skipped"
    assert answer["attempts"][0]["reason"] == reason
    assert [c.model for c in sim.calls] == ["capable"]


def test_an_image_url_skips_providers_that_do_not_fetch_urls(hub, sim):
    gemini = hub.model("gem", "google", supports_vision=True)
    gpt = hub.model("gpt", "openai", supports_vision=True)
    hub.route("pam", [gemini, gpt])
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}

    answer = hub.chat({"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}]}).json()

    assert answer["model"] == "gpt"
    assert answer["attempts"][0]["reason"] == "does not fetch image URLs"
    assert "1 image" in answer["content"]


def test_a_gif_skips_gemini_which_refuses_it(hub, sim):
    gif = "data:image/gif;base64," + base64.b64encode(b"GIF89a" + b"\0" * 16).decode()
    hub.route(
        "pam", [hub.model("gem", "google", supports_vision=True), hub.model("gpt", "openai", supports_vision=True)]
    )
    content = [{"type": "image_url", "image_url": {"url": gif}}]

    answer = hub.chat({"messages": [{"role": "user", "content": content}]}).json()

    assert (answer["model"], answer["attempts"][0]["reason"]) == ("gpt", "does not take image/gif")


def test_no_capable_model_is_400_with_no_upstream_call(hub, sim):
    hub.route("pam", [hub.model("a", "openai", supports_tools=False), hub.model("b", "google", supports_tools=False)])

    response = chat(hub, tools=[WEATHER])

    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "no_capable_model"
    assert "tool calling" in error["message"]
    assert [(a["model"], a["outcome"]) for a in error["attempts"]] == [("a", "skipped"), ("b", "skipped")]
    assert sim.calls == []


def test_a_plain_text_request_needs_nothing(hub, sim):
    hub.route("pam", [hub.model("plain", "openai", supports_tools=False, supports_vision=False)])
    assert hub.chat().json()["model"] == "plain"


# -- the universal fallback route --


@pytest.fixture
def with_fallback(hub):
    shared, own = hub.model("shared", "openai"), hub.model("own", "anthropic")
    extra = hub.model("extra", "google")
    fallback = hub.route("fallback", [shared, extra])
    task = hub.route("fast", [own, shared])
    task.fallback_route = fallback
    task.save()
    return hub


def test_an_exhausted_chain_goes_on_with_the_fallback_routes_untried_models(with_fallback, sim):
    sim.set_fault("own", status=500)
    sim.set_fault("shared", status=503)

    body = with_fallback.chat({"message": "Hi", "route": "fast"}).json()

    assert body["model"] == "extra"
    assert body["source"] == "fallback_2"  # counted across both chains; "shared" is not tried twice
    assert [(a["model"], a["route"], a["outcome"]) for a in body["attempts"]] == [
        ("own", "fast", "server"),
        ("shared", "fast", "overloaded"),
        ("extra", "fallback", "ok"),
    ]
    assert [c.model for c in sim.calls] == ["own", "shared", "extra"]


def test_the_fallback_route_is_not_tried_while_the_chain_answers(with_fallback, sim):
    assert with_fallback.chat({"message": "Hi", "route": "fast"}).json()["model"] == "own"
    assert [c.model for c in sim.calls] == ["own"]


def test_a_disabled_fallback_route_is_not_followed(with_fallback, sim):
    Route.objects.filter(name="fallback").update(enabled=False)
    sim.set_fault("own", status=500)
    sim.set_fault("shared", status=500)
    response = with_fallback.chat({"message": "Hi", "route": "fast"})
    assert response.status_code == 503
    assert "extra" not in {c.model for c in sim.calls}


def test_seeded_task_routes_name_the_universal_fallback(db):
    routes = {r.name: r.fallback_route.name if r.fallback_route else None for r in Route.objects.all()}
    assert {name: routes[name] for name in ("fast", "reasoning", "summarization")} == dict.fromkeys(
        ("fast", "reasoning", "summarization"), "fallback"
    )
    assert routes["pam"] is None


# -- max output, keys --


def test_without_max_tokens_a_model_gets_its_own_maximum(hub, sim):
    claude = hub.model("claude", "anthropic", max_output_tokens=64_000)
    gpt = hub.model("gpt", "openai", max_output_tokens=16_384)
    hub.route("pam", [claude])
    hub.route("other", [gpt])

    hub.chat({"message": "Hi"})
    hub.chat({"message": "Hi", "route": "other"})

    anthropic_body, openai_body = (c.body for c in sim.calls)
    assert anthropic_body["max_tokens"] == 64_000  # Anthropic requires one: the model's maximum
    assert "max_tokens" not in openai_body and "max_completion_tokens" not in openai_body


@pytest.mark.parametrize("set_name", ["GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_AI_API_KEY"])
def test_each_google_key_name_is_read(monkeypatch, set_name):
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_AI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(set_name, "g-key")
    assert api_key_from_env("GOOGLE_API_KEY") == "g-key"


def test_google_api_key_wins_over_the_aliases(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "first")
    monkeypatch.setenv("GOOGLE_AI_API_KEY", "third")
    assert api_key_from_env("GOOGLE_API_KEY") == "first"
