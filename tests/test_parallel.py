"""Each parallel test worker gets a Redis database of its own (tests/parallel.py)."""

import pytest

from tests.parallel import redis_url_for_worker


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "gw0", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379/0", "gw1", "redis://127.0.0.1:6379/2"),
        ("redis://127.0.0.1:6379", "gw0", "redis://127.0.0.1:6379/1"),
        ("redis://:pw@cache:6380/14", "gw1", "redis://:pw@cache:6380/0"),  # wraps within the 16
        ("unix:///run/redis.sock?db=3", "gw0", "unix:///run/redis.sock?db=4"),
        ("unix:///run/redis.sock", "gw1", "unix:///run/redis.sock?db=2"),
    ],
)
def test_a_worker_gets_the_database_after_the_runs_own(url, worker, expected):
    assert redis_url_for_worker(url, worker) == expected
