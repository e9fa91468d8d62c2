"""A conversation through the native chat endpoint: the earlier turns prepended to a
request that brings only its new message (what the upstream received shows it), each
turn kept with the model that answered, its tokens and its cost, per key, fitted to each
model's window, failover candidates included."""

import pytest
from django.db import OperationalError

from modelhub import conversations
from modelhub.models import Conversation, ConversationMessage, UsageRecord
from tests.conversations.conftest import say, sent

REPLY = "Simulated reply from big."


def test_the_second_turn_carries_the_first(talk, sim):
    say(talk, "My name is Ada.")
    say(talk, "What is my name?")

    assert sent(sim) == [("user", "My name is Ada."), ("assistant", REPLY), ("user", "What is my name?")]


def test_each_turn_is_kept_with_its_model_tokens_cost_and_request(talk, sim):
    first = say(talk, "My name is Ada.")
    second = say(talk, "What is my name?")

    conversation = Conversation.objects.get(conversation_id="c-1")
    rows = list(conversation.messages.order_by("id"))
    assert [(m.role, m.content) for m in rows] == [
        ("user", "My name is Ada."),
        ("assistant", REPLY),
        ("user", "What is my name?"),
        ("assistant", REPLY),
    ]
    answers = [first, second]
    for row, answer in zip(rows[1::2], answers, strict=True):
        assert (row.model, row.provider, row.request_id) == ("big", "sim-openai", answer["request_id"])
        assert (row.input_tokens, row.output_tokens) == tuple(answer["usage"].values())
        assert float(row.cost_usd) == pytest.approx(answer["cost_usd"])
    assert [row.request_id for row in rows[::2]] == [a["request_id"] for a in answers]
    assert conversation.turns == 2 and conversation.api_key_id == talk.key_obj.pk and conversation.route == "pam"
    assert conversation.input_tokens == sum(a["usage"]["input_tokens"] for a in answers)
    assert conversation.output_tokens == sum(a["usage"]["output_tokens"] for a in answers)
    assert conversation.cost_usd == sum(r.cost_usd for r in UsageRecord.objects.all())
    assert second["conversation_id"] == "c-1"


def test_without_a_conversation_id_nothing_is_kept_or_prepended(talk, sim):
    say(talk, "Hi", None)
    say(talk, "Hi again", None)

    assert sent(sim) == [("user", "Hi again")]
    assert not Conversation.objects.exists() and not ConversationMessage.objects.exists()


def test_another_keys_conversation_of_the_same_id_is_its_own(talk, sim, other_key):
    say(talk, "My name is Ada.")
    say(talk, "What is my name?", key=other_key)

    assert sent(sim) == [("user", "What is my name?")]
    assert Conversation.objects.filter(conversation_id="c-1").count() == 2


def test_a_small_window_gets_fewer_earlier_turns_than_a_big_one(talk, sim):
    for n in range(6):
        say(talk, f"Turn {n}: " + "word " * 40)

    say(talk, "Small model now?", route="small", max_tokens=50)
    small = sent(sim)
    say(talk, "Big model now?")
    big = sent(sim)

    six_turns, small_history = big[:12], small[:-1]
    assert len(big) == 12 + 2 + 1  # every turn, the small route's too, and the question
    assert small[-1] == ("user", "Small model now?")
    assert 0 < len(small_history) < len(six_turns)
    assert small_history == six_turns[-len(small_history) :]  # the latest turns: the oldest dropped
    assert small_history[0][0] == "user"


def test_each_failover_candidate_gets_the_history_its_window_holds(talk, sim):
    little, big = (
        talk.model("little-primary", "openai", context_window=320, max_output_tokens=50),
        talk.model("big-fallback", "openai", context_window=100_000, max_output_tokens=50),
    )
    talk.route("mixed", [little, big])
    for n in range(6):
        say(talk, f"Turn {n}: " + "word " * 40, route="mixed")
    sim.set_fault("little-primary", status=500)

    answer = say(talk, "And now?", route="mixed", max_tokens=50)

    (primary,) = [c for c in sim.calls if c.model == "little-primary" and c.status == 500]
    fallback = sim.calls[-1]
    assert (answer["model"], fallback.model) == ("big-fallback", "big-fallback")
    assert len(primary.body["messages"]) < len(fallback.body["messages"]) == 6 * 2 + 1


def test_a_request_that_brings_its_own_turns_gets_none_prepended_and_keeps_only_its_new_ones(talk, sim):
    say(talk, "My name is Ada.")
    own = [
        {"role": "user", "content": "I live in Paris."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Where do I live?"},
    ]

    talk.chat({"messages": own, "conversation_id": "c-1"})

    assert sent(sim) == [(m["role"], m["content"]) for m in own]
    kept = ConversationMessage.objects.filter(conversation__conversation_id="c-1").order_by("id")
    assert [m.content for m in kept] == ["My name is Ada.", REPLY, "Where do I live?", REPLY]


def test_a_tool_loop_is_kept_and_replayed_as_the_provider_takes_it(hub, sim):
    hub.route("pam", [hub.model("claude", "anthropic")])
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    asked = say(hub, "Weather in Paris?", tools=[weather])
    (call,) = asked["tool_calls"]
    loop = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 C, sunny"},
    ]
    answered = hub.chat({"messages": loop, "conversation_id": "c-1", "tools": [weather]}).json()

    say(hub, "Thanks! And tomorrow?", tools=[weather])

    replayed = sim.calls[-1].body["messages"]
    assert [m["role"] for m in replayed] == ["user", "assistant", "user", "assistant", "user"]
    assert replayed[1]["content"][-1]["type"] == "tool_use" and replayed[2]["content"][0]["type"] == "tool_result"
    assert replayed[3]["content"] == answered["content"]
    kept = ConversationMessage.objects.order_by("id")
    assert [m.role for m in kept] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert kept[2].tool_calls == {"tool_call_id": call["id"], "name": "get_weather"}


def test_an_unreadable_history_is_503_and_calls_nobody(talk, sim, monkeypatch):
    def broken(**kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(conversations, "history_read", broken)

    response = talk.chat({"message": "Hi", "conversation_id": "c-1"})

    assert response.status_code == 503 and response.json()["error"]["type"] == "service_unavailable"
    assert sim.calls == []


def test_a_turn_that_cannot_be_kept_is_still_answered(talk, sim, monkeypatch, caplog):
    def broken(**kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(conversations, "turn_record", broken)

    answer = say(talk, "Hi")

    assert answer["content"] == REPLY
    assert "not kept" in caplog.text and not Conversation.objects.exists()
