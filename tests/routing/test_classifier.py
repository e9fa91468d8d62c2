"""The heuristic classifier: a fixture table of prompts with their expected tier and
category (the PAM hybrid and SarvanOM documents' examples and the issue's regressions
among them), whole-word matching, what the system prompt and images change, a route's own
keywords, weights and threshold, a bad config falling back to the defaults, and the
compiled rules being built once per distinct config."""

from __future__ import annotations

import time

import pytest

from modelhub.providers.base import ChatRequest, Image, Message
from modelhub.routing import classifier
from modelhub.routing.classifier import (
    CATEGORIES,
    DEFAULT_THRESHOLD,
    TIERS,
    Classification,
    classifier_config_errors,
    classify,
    rules_for,
)
from modelhub.routing.snapshot import RouteSpec

IMAGE = Image(url="data:image/png;base64,iVBORw0KGgo=", media_type="image/png", data="iVBORw0KGgo=")
RATE_LIMITER = (
    "Design a distributed rate limiter for a multi-region API gateway. First analyse the trade-offs "
    "between token bucket and sliding window algorithms, then write the Python implementation with "
    "Redis Lua scripts, explain the consistency guarantees step by step, and finally compare the "
    "latency and cost of each approach:\n```python\ndef allow(key):\n    pass\n```"
)
# Greetings, thanks and lookups: the ~95% the PAM hybrid document sends to the cheap model.
SIMPLE = [
    "Hi",
    "Hi, what time is it?",
    "Hello! How are you today?",
    "Thanks, that helped a lot.",
    "What's my current balance?",
    "Show me my recent trips",
    "What is the capital of France?",  # "capital" is not "api"
    "Who wrote Pride and Prejudice?",
    "How many ounces are in a pound?",
    "Translate 'good morning' into Spanish",
    "Write me a short poem about the sea, I love poetry",  # "poetry" is not "try"
    "Tell me a joke about camping",
    "What time does the campground office open?",
    "Define photosynthesis in one sentence.",
    "Remind me to check the tyre pressure tomorrow",
    "What's the weather like in Lisbon?",
    "What is an API?",
    "Explain why the sky is blue",
    "How do I reverse a list in Python?",
    "Help me prepare for the move:\n1. list what to pack\n2. book the movers\n3. cancel the internet",
]
# The PAM hybrid document's complex tasks, and research asks.
RESEARCH = [
    "Plan a 2-week RV trip from SF to Seattle under $2000",
    "Analyze my spending patterns and suggest optimizations",
    "Write a comprehensive literature review of CRISPR gene editing research with citations",
    "Compare the long-term evidence on intermittent fasting versus calorie restriction, citing peer-reviewed studies",
    "Summarize the history of the Roman Empire's road network and assess its economic impact in depth.",
]
# Code, or technical terms in a complex request.
TECHNICAL = [
    "Fix this bug:\n```python\ndef total(items):\n    return sum(i.price for i in items\n```",
    "Why does this raise KeyError?\nTraceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'user'",
    "Explain the trade-offs between microservices and monoliths for a team of five engineers",
    "Design a schema for a multi-tenant PostgreSQL database with row-level security and explain the indexing strategy",
    "I need to migrate our backend. First, audit the current API endpoints; then design the new schema; "
    "finally write a rollout plan with rollback steps.",
    RATE_LIMITER,
]
FIXTURES = (
    [(text, "simple", "simple") for text in SIMPLE]
    + [(text, "complex", "research") for text in RESEARCH]
    + [(text, "complex", "technical") for text in TECHNICAL]
)


def ask(text: str, *, system: str | None = None, images=(), route=None) -> Classification:
    request = ChatRequest(messages=(Message("user", text, images=images),), system=system)
    return classify(request, route)


def route_with(config: dict | None = None, threshold: float | None = None) -> RouteSpec:
    return RouteSpec("hybrid", True, (), strategy="complexity", classifier_config=config or {}, threshold=threshold)


@pytest.mark.parametrize("text, tier, category", FIXTURES, ids=[f"{i:02d}" for i in range(len(FIXTURES))])
def test_fixture_table(text, tier, category):
    result = ask(text)

    assert (result.tier, result.category) == (tier, category), (result.score, result.signals)
    assert (result.score >= DEFAULT_THRESHOLD) == (tier == "complex")
    assert result.tier in TIERS and result.category in CATEGORIES


def test_the_fixture_table_is_mostly_simple_and_covers_every_category_but_multimedia():
    assert len(FIXTURES) >= 30
    assert {category for _, _, category in FIXTURES} == {"simple", "technical", "research"}


@pytest.mark.parametrize(
    "text, absent",
    [
        ("What is the capital of France?", "technical"),  # c-api-tal
        ("The rapid growth of the apiary", "technical"),  # api-ary
        ("Escaping the island on a raft", "technical"),
        ("Her undefinedness aside", "code"),
    ],
)
def test_keywords_match_whole_words_only(text, absent):
    assert absent not in ask(text).signals


def test_a_route_keyword_matches_whole_words_only():
    route = route_with({"keywords": {"code": ["try"]}})

    assert "code" not in ask("Write me some poetry about the sea", route=route).signals
    assert "code" not in ask("An entry for the registry", route=route).signals
    assert "code" in ask("Let me try it", route=route).signals


def test_keywords_match_plurals_and_phrases_whatever_separates_their_words():
    assert "technical" in ask("Which APIs do you expose?").signals
    for spelling in ("trade-offs", "trade offs", "tradeoffs", "Trade-Off"):
        assert "reasoning" in ask(f"The {spelling} here").signals, spelling
    assert "multi_step" in ask("Walk me through it step-by-step").signals


def test_an_image_makes_the_request_multimedia_whatever_its_tier():
    plain = ask("What is in this picture?", images=(IMAGE,))
    deep = ask("Analyse this chart in depth, compare the trends and explain their implications", images=(IMAGE,))

    assert (plain.tier, plain.category, "image" in plain.signals) == ("simple", "multimedia", True)
    assert (deep.tier, deep.category) == ("complex", "multimedia")


def test_the_last_user_message_is_classified_not_the_history():
    request = ChatRequest(
        messages=(
            Message("user", RATE_LIMITER),
            Message("assistant", "Here is the design ..."),
            Message("user", "Thanks!"),
        )
    )

    assert classify(request, None).tier == "simple"


def test_a_long_system_prompt_does_not_make_a_greeting_complex():
    system = "You are PAM, the assistant of an RV travel app. " * 60  # 2,900 characters

    result = ask("Hi", system=system)

    assert result.tier == "simple" and "length" not in result.signals


def test_the_system_prompts_terms_count_at_a_discount():
    text = "Explain how the caching works"
    system = "You are a senior engineer: answer about databases, Redis, Kubernetes and latency."

    alone, with_system = ask(text), ask(text, system=system)

    assert "system" in with_system.signals and "system" not in alone.signals
    assert alone.score < with_system.score < alone.score + classifier.DEFAULT_WEIGHTS["technical"]


def test_length_raises_the_score_up_to_long_chars():
    scores = [ask("word " * n).score for n in (20, 100, 300, 1000)]

    assert scores[0] < scores[1] < scores[2] == scores[3]
    assert "length" in ask("word " * 300).signals and "length" not in ask("word " * 20).signals


def test_a_huge_paste_costs_what_its_scanned_window_costs():
    huge = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20_000  # 1.1 MB
    ask(huge)

    started = time.perf_counter()
    result = ask(huge)
    elapsed = time.perf_counter() - started

    assert result.score >= classifier.DEFAULT_WEIGHTS["length"] - 1e-9
    assert elapsed < 0.01  # ~0.15 ms measured; a scan of the whole megabyte takes tens of ms


def test_the_score_stays_within_0_and_1():
    assert ask(RATE_LIMITER + "\n" + RATE_LIMITER).score == 1.0
    assert ask("Hi").score == 0.0


def test_the_routes_threshold_decides_the_tier():
    text = "Explain why the sky is blue"
    score = ask(text).score

    assert ask(text, route=route_with(threshold=score)).tier == "complex"
    assert ask(text, route=route_with(threshold=score + 0.01)).tier == "simple"
    assert ask(text, route=route_with(threshold=0.0)).tier == "complex"
    assert ask(text, route=route_with(threshold=None)).tier == ("complex" if score >= DEFAULT_THRESHOLD else "simple")


def test_a_routes_keywords_replace_or_extend_a_family_and_its_weights_replace_the_defaults():
    text = "Which campground has full hookups near Yosemite?"
    replaced = route_with({"keywords": {"technical": ["hookup", "campground"]}})
    extended = route_with({"extra_keywords": {"technical": ["hookup"]}})
    heavier = route_with({"keywords": {"technical": ["hookup", "campground"]}, "weights": {"technical": 0.9}})

    assert "technical" not in ask(text).signals
    assert "technical" in ask(text, route=replaced).signals
    assert "technical" not in ask("What is an API?", route=replaced).signals  # the default list is gone
    assert "technical" in ask(text, route=extended).signals
    assert "technical" in ask("What is an API?", route=extended).signals  # the default list is kept
    assert ask(text, route=heavier).score > ask(text, route=replaced).score


def test_a_bad_config_falls_back_to_the_defaults_and_says_so(caplog):
    route = route_with({"weights": {"code": "heavy"}, "keywords": {"nonsense": ["x"]}})

    result = ask(RATE_LIMITER, route=route)

    assert "config_invalid" in result.signals
    assert (result.tier, result.score) == (ask(RATE_LIMITER).tier, ask(RATE_LIMITER).score)
    assert "classifier config ignored" in caplog.text


@pytest.mark.parametrize(
    "config, fragment",
    [
        ([], "must be a JSON object"),
        ({"keyword": {}}, "Unknown key 'keyword'"),
        ({"keywords": ["api"]}, "'keywords' must be an object"),
        ({"keywords": {"nonsense": ["x"]}}, "unknown family 'nonsense'"),
        ({"keywords": {"technical": "api"}}, "'keywords.technical' must be a list"),
        ({"extra_keywords": {"technical": ["?!"]}}, "not only punctuation"),
        ({"extra_keywords": {"technical": [3]}}, "'extra_keywords.technical': 3"),
        ({"weights": {"code": "heavy"}}, "'weights.code' must be a number from -1 to 1"),
        ({"weights": {"code": True}}, "'weights.code' must be a number"),
        ({"weights": {"code": 2}}, "'weights.code' must be a number from -1 to 1"),
        ({"weights": {"system": -0.5}}, "'weights.system' must be a number from 0 to 1"),
        ({"weights": {"colour": 0.1}}, "unknown signal 'colour'"),
        ({"weights": [0.1]}, "'weights' must be an object"),
        ({"long_chars": 0}, "'long_chars' must be a whole number"),
        ({"short_chars": 2.5}, "'short_chars' must be a whole number"),
    ],
)
def test_config_errors_name_what_is_wrong(config, fragment):
    errors = classifier_config_errors(config)

    assert any(fragment in error for error in errors), errors


def test_a_good_config_has_no_errors():
    config = {
        "keywords": {"technical": ["campground", "hookup"], "simple": []},
        "extra_keywords": {"reasoning": ["route planning"]},
        "weights": {"code": 0.3, "simple": -0.5, "system": 0},
        "long_chars": 2000,
        "short_chars": 40,
    }

    assert classifier_config_errors(config) == []
    assert classifier_config_errors({}) == [] and classifier_config_errors(None) == []


def test_rules_are_compiled_once_per_distinct_config(monkeypatch):
    compiled = []
    real = classifier.rules_compile
    monkeypatch.setattr(classifier, "_rules_cache", {})
    monkeypatch.setattr(classifier, "rules_compile", lambda config: compiled.append(config) or real(config))
    first = {"weights": {"code": 0.3}, "keywords": {"technical": ["api"]}}
    same = {"keywords": {"technical": ["api"]}, "weights": {"code": 0.3}}  # equal, another object, other order

    for config in (first, same, first, {"weights": {"code": 0.31}}):
        ask("Hi", route=route_with(config))

    assert compiled == [first, {"weights": {"code": 0.31}}]
    assert rules_for(first) is rules_for(same)
    assert rules_for({}) is rules_for(None) is classifier.DEFAULT_RULES
