"""The tasks on a real Celery worker consuming the real Redis broker (CI sets REDIS_URL).
A worker runs in a thread of this process with its own database connection, so the test
data is committed (transaction=True). Where two workers run at once, the second is a
`celery worker` process of its own, as in a deployment: two in-thread workers share
Celery's module state, and stopping them could hang."""

import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache

from modelhub import probes, tasks
from modelhub.models import DailyCost, ModelHealth, UsageRecord
from pam.celery import app
from tests.e2e.conftest import celery_worker_process, needs_postgres
from tests.factories import UsageRecordFactory
from tests.tasks.conftest import needs_redis

pytestmark = [needs_redis, pytest.mark.django_db(transaction=True)]
TIMEOUT = 60
LOCK_PREFIX_DEFAULT = probes.LOCK_PREFIX  # read before any test replaces it


@pytest.fixture
def queue_name():
    return f"pam-test-{uuid.uuid4().hex[:12]}"  # no stale message from an earlier run reaches us


def _worker(queue: str, name: str):
    return start_worker(
        app, pool="solo", perform_ping_check=False, queues=[queue], hostname=f"{name}@{queue}", shutdown_timeout=30
    )


def test_probe_task_on_a_real_worker_starts_a_cooldown(hub, sim, queue_name):
    healthy, sick = hub.model("worker-ok", "anthropic"), hub.model("worker-sick", "openai")
    hub.route("r", [healthy, sick])
    sim.set_fault("worker-sick", status=500)

    with _worker(queue_name, "w1"):
        counts = tasks.probe_models.apply_async(queue=queue_name, ignore_result=False).get(timeout=TIMEOUT)

    assert counts == {"ok": 1, "server": 1}
    assert ModelHealth.objects.get(model=sick).state == "cooling_down"
    assert UsageRecord.objects.filter(is_probe=True).count() == 2


@needs_postgres  # the worker process reads the test's rows
def test_two_workers_probe_each_model_once(hub, sim, queue_name, monkeypatch):
    models = [hub.model(f"worker-dedup-{i}", kind) for i, kind in enumerate(("anthropic", "google", "openai"))]
    hub.route("r", models)
    monkeypatch.setattr(sim, "default_latency_ms", 100)  # the two rounds overlap when they can
    # The worker process takes its locks under the real prefix: so does this one, and no
    # lock of an earlier run (whose models had the same primary keys) is left.
    monkeypatch.setattr(probes, "LOCK_PREFIX", LOCK_PREFIX_DEFAULT)
    cache.delete_many([f"{LOCK_PREFIX_DEFAULT}{m.pk}" for m in models])

    with _worker(queue_name + "-a", "w1"), celery_worker_process(queue_name + "-b", "w2"):
        sent = [tasks.probe_models.apply_async(queue=queue_name + q, ignore_result=False) for q in ("-a", "-b")]
        rounds = [result.get(timeout=TIMEOUT) for result in sent]

    assert Counter(call.model for call in sim.calls) == {m.model_id: 1 for m in models}
    assert sum((Counter(r) for r in rounds), Counter()) == {"ok": 3, "skipped": 3}
    assert UsageRecord.objects.filter(is_probe=True).count() == 3


def test_rollup_task_on_a_real_worker_sums_the_ledger(db, queue_name):
    costs = [Decimal("0.000000000001"), Decimal("0.1"), Decimal("0.2"), Decimal("1.999999999999")]
    for cost in costs:
        UsageRecordFactory(created_at=datetime.now(UTC), cost_usd=cost)

    with _worker(queue_name, "w1"):
        for _ in range(2):
            tasks.rollup_costs.apply_async(queue=queue_name, ignore_result=False).get(timeout=TIMEOUT)

    [row] = DailyCost.objects.all()
    assert (row.cost_usd, row.requests) == (sum(costs), 4)
