"""The process-wide objects: made in one place, on first use, from the settings in force;
``runtime_reset()`` forgets them all."""

from modelhub.limits import LocalCounters, RedisCounters
from modelhub.runtime import runtime, runtime_reset


def test_runtime_is_one_object_per_process_until_reset():
    first = runtime()
    parts = (first.routing, first.ledger, first.versions, first.counters, first.adapters)

    assert runtime() is first
    assert (first.routing, first.ledger, first.versions, first.counters, first.adapters) == parts

    runtime_reset()
    again = runtime()
    assert again is not first
    assert all(
        new is not old
        for new, old in zip(
            (again.routing, again.ledger, again.versions, again.counters, again.adapters), parts, strict=True
        )
    )


def test_parts_follow_the_settings_in_force_at_first_use(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert isinstance(runtime().counters, RedisCounters)

    settings.REDIS_URL = ""
    assert isinstance(runtime().counters, RedisCounters)  # built once, until a reset
    runtime_reset()
    assert isinstance(runtime().counters, LocalCounters)


def test_routing_state_reads_the_runtimes_version_store():
    assert runtime().routing.versions is runtime().versions


def test_reset_forgets_this_process_health_board(db):
    runtime().routing.board.set(1, runtime().routing.board.get(1).__class__(state="cooling_down"))
    runtime_reset()
    assert runtime().routing.board.get(1).state == "healthy"
