"""A 429/503's Retry-After and the breaker: a wait of 0 ("retry now", or a date already past)
is a failure like any other, cooled for the breaker's own cooldown; a wait past the breaker's
longest cooldown is capped there."""

import email.utils
import time

import pytest
from google.genai import errors as genai_errors

from modelhub.models import ModelHealth
from modelhub.providers import errors
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.routing.health import COOLING_DOWN, Health, health_transition

NOW = 1_700_000_000.0
BASE, CAP = 300.0, 3600.0
YEAR = 31_536_000


def _fail(health, error, *, base=BASE, now=NOW):
    return health_transition(health, error=error, now=now, cooldown_seconds=base, cooldown_max_seconds=CAP)


@pytest.mark.parametrize("kind", [ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED], ids=["429", "503"])
def test_a_retry_after_of_zero_cools_for_the_breakers_own_cooldown_and_counts(kind):
    health = _fail(Health(), ProviderError(kind, "busy", retry_after=0.0))
    assert health is not None
    assert (health.state, health.cooldown_until, health.consecutive_failures) == (COOLING_DOWN, NOW + BASE, 1)
    assert health.last_error_kind == kind.value
    assert health.cooldown_reason == f"{kind.value}: 300 s × 1 time in a row = 300 s (its Retry-After of 0 s not taken)"


def test_a_trial_answered_with_a_retry_after_of_zero_is_a_verdict():
    half_open = Health(state=COOLING_DOWN, cooldown_until=NOW - 1, consecutive_failures=3)
    health = _fail(half_open, ProviderError(ErrorKind.OVERLOADED, "503", retry_after=0.0))
    assert health is not None
    assert (health.state, health.cooldown_until, health.consecutive_failures) == (COOLING_DOWN, NOW + 1200, 4)
    assert health.cooldown_reason.startswith("its trial request failed (overloaded): 300 s × 4 times in a row")


def _google_429(delay: str) -> genai_errors.APIError:
    body = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": []}}
    body["error"]["details"].append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return genai_errors.ClientError(429, body)


@pytest.mark.parametrize(
    "parsed",
    [
        lambda: errors.from_status(429, "slow down", headers={"retry-after": "0"}),
        lambda: errors.from_status(429, "slow down", headers={"retry-after-ms": "0"}),
        lambda: errors.from_status(503, "busy", headers={"retry-after": email.utils.formatdate(time.time() - 60)}),
        lambda: errors.from_google(_google_429("0s")),
    ],
    ids=["retry-after-0", "retry-after-ms-0", "past-http-date", "gemini-retryDelay-0s"],
)
def test_each_way_a_provider_says_retry_now_cools_the_model(parsed):
    health = _fail(Health(), parsed(), now=time.time())
    assert health is not None and health.state == COOLING_DOWN and health.consecutive_failures == 1
    assert round(health.cooldown_until - health.changed_at) == BASE


def test_with_the_breaker_off_a_retry_after_of_zero_still_cools_nothing():
    assert _fail(Health(), ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=0.0), base=0) is None
    assert _fail(Health(), ProviderError(ErrorKind.SERVER, "500"), base=0) is None
    honoured = _fail(Health(), ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=5.0), base=0)
    assert honoured is not None and honoured.cooldown_until == NOW + 5  # a wait the provider asked for


def test_a_retry_after_past_the_longest_cooldown_is_capped_there():
    health = _fail(Health(), ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=YEAR))
    assert health is not None and health.cooldown_until == NOW + CAP
    assert health.cooldown_reason == "rate_limited: the provider's Retry-After, 31536000 s, capped at 3600 s"
    shorter = _fail(Health(), ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=42))
    assert shorter is not None and shorter.cooldown_until == NOW + 42


@pytest.mark.parametrize(("retry_after", "cooled"), [(0, BASE), (YEAR, CAP)], ids=["zero", "a-year"])
def test_through_the_hub_a_429s_retry_after_sets_a_bounded_cooldown(hub, sim, retry_after, cooled):
    hub.route("pam", [hub.model("limited", "openai"), hub.model("spare", "anthropic")])
    sim.set_fault("limited", status=429, retry_after=retry_after)
    before = time.time()
    assert hub.chat().json()["model"] == "spare"
    stored = ModelHealth.objects.get(model__model_id="limited")
    assert (stored.state, stored.last_error_kind, stored.consecutive_failures) == ("cooling_down", "rate_limited", 1)
    assert cooled - 1 <= stored.cooldown_until.timestamp() - before <= cooled + 2
    seen = len(sim.calls)
    assert hub.chat().json()["model"] == "spare"
    assert [c.model for c in sim.calls[seen:]] == ["spare"]
