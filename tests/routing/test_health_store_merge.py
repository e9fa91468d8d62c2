"""Two processes that take the same model out store their coolings into one row: the later
deadline and the longer streak survive, whichever is written last; a recovery replaces them."""

import time

import pytest

from modelhub.ledger import health_store
from modelhub.models import ModelHealth
from modelhub.routing.health import COOLING_DOWN, HEALTHY, Health
from tests.factories import AIModelFactory

pytestmark = pytest.mark.django_db


def cooling(*, seconds: float, streak: int, kind: str, reason: str, now: float) -> Health:
    return Health(
        state=COOLING_DOWN,
        cooldown_until=now + seconds,
        consecutive_failures=streak,
        last_error_kind=kind,
        last_error_message=f"{kind} error",
        changed_at=now,
        cooldown_reason=reason,
    )


def stored(model) -> ModelHealth:
    return ModelHealth.objects.get(model=model)


def test_a_shorter_cooling_written_last_keeps_the_later_deadline_and_the_longer_streak():
    model, now = AIModelFactory(), time.time()
    # Process A's third failure in a row: 900 s. Process B, whose board had not seen those,
    # then fails a call of its own: 300 s, streak 1. B's row is written last.
    health_store(model_pk=model.pk, health=cooling(seconds=900, streak=3, kind="server", reason="A: 900 s", now=now))
    health_store(
        model_pk=model.pk, health=cooling(seconds=300, streak=1, kind="timeout", reason="B: 300 s", now=now + 1)
    )
    row = stored(model)
    assert row.state == COOLING_DOWN
    assert row.cooldown_until.timestamp() == pytest.approx(now + 900, abs=0.01)
    assert (row.consecutive_failures, row.cooldown_reason) == (3, "A: 900 s")
    assert (row.last_error_kind, row.failure_count) == ("timeout", 2)  # the latest failure is still told


def test_a_later_deadline_written_last_replaces_the_earlier_one():
    model, now = AIModelFactory(), time.time()
    health_store(model_pk=model.pk, health=cooling(seconds=300, streak=1, kind="server", reason="A", now=now))
    health_store(model_pk=model.pk, health=cooling(seconds=600, streak=2, kind="server", reason="B", now=now + 1))
    row = stored(model)
    assert row.cooldown_until.timestamp() == pytest.approx(now + 1 + 600, abs=0.01)
    assert (row.consecutive_failures, row.cooldown_reason) == (2, "B")


def test_a_recovery_replaces_a_cooling():
    model, now = AIModelFactory(), time.time()
    health_store(model_pk=model.pk, health=cooling(seconds=900, streak=3, kind="server", reason="A", now=now))
    health_store(model_pk=model.pk, health=Health(changed_at=now + 1))
    row = stored(model)
    assert (row.state, row.cooldown_until, row.consecutive_failures) == (HEALTHY, None, 0)
    assert (row.success_count, row.failure_count) == (1, 1)
