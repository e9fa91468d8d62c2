"""The request id of a chat request travels into the Celery task the request started, and
onto that task's log lines: a real `celery worker` process on Redis, logging JSON, replays
the request's shadow copy (a rollout in its shadow phase) and its lines carry the id the
chat answer gave in X-Request-ID."""

from __future__ import annotations

import contextlib
import time
import uuid

import orjson
import pytest

from modelhub import rollouts
from modelhub.audit import Actor
from modelhub.models import ConfigChange, Rollout, UsageRecord
from pam.celery import app as celery_app
from tests.e2e.conftest import celery_worker_process, e2e_hub, needs_postgres, needs_redis  # noqa: F401

pytestmark = [needs_postgres, needs_redis, pytest.mark.django_db(transaction=True)]
TIMEOUT = 60


@contextlib.contextmanager
def worker_logging_json(queue: str, log_path):
    """A `celery worker` process consuming ``queue``, its log lines (JSON, INFO and up) in ``log_path``."""
    with (
        open(log_path, "wb") as log_file,
        celery_worker_process(
            queue, "obs", output=log_file, level="info", MODELHUB_LOG_FORMAT="json", MODELHUB_LOG_LEVEL="INFO"
        ) as process,
    ):
        yield process


@pytest.fixture
def shadowed(e2e_hub):
    """Route "pam" answered by task-stable; every answered request copied to task-cand."""
    stable, candidate = e2e_hub.model("task-stable", "openai"), e2e_hub.model("task-cand", "anthropic")
    route = e2e_hub.route("pam", [stable])
    rollout = Rollout(route=route, candidate=candidate, phase="shadow", shadow_percent=100, min_requests=1000)
    rollouts.rollout_start(rollout=rollout, by=Actor("ops", ConfigChange.Source.API))
    return e2e_hub


@pytest.fixture
def task_queue():
    """The shadow copies go to a queue of this test's own (no message of another run reaches its worker)."""
    queue = f"obs-test-{uuid.uuid4().hex[:12]}"
    celery_app.conf.update(task_routes={"modelhub.tasks.shadow_replay": {"queue": queue}})
    yield queue
    celery_app.conf.update(task_routes=None)


def _json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict):
                lines.append(line)
    return lines


def _shadow_stored() -> bool:
    return UsageRecord.objects.filter(model="task-cand", arm="shadow").exists()


def test_a_chat_requests_id_is_on_the_log_lines_of_the_task_it_started(shadowed, sim, task_queue, tmp_path, settings):
    settings.MODELHUB = {
        **settings.MODELHUB,
        "ROLLOUT_BACKGROUND": True,
    }  # as served: the copy is sent after the answer
    log_path = tmp_path / "worker.log"
    with worker_logging_json(task_queue, log_path):
        response = shadowed.chat()
        assert response.status_code == 200
        request_id = response["X-Request-ID"]
        deadline = time.monotonic() + TIMEOUT
        while not _shadow_stored() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _shadow_stored(), log_path.read_text()[-3000:]

    lines = _json_lines(log_path)
    in_task = [line for line in lines if request_id in (line.get("request_id"), line.get("origin_request_id"))]
    [attempt] = [line for line in in_task if line["message"] == "attempt"]
    shadow = UsageRecord.objects.get(model="task-cand")
    # the copy is a request of its own (its ledger rows), started by the chat request
    assert (attempt["request_id"], attempt["origin_request_id"]) == (shadow.request_id, request_id)
    assert (attempt["model"], attempt["arm"], attempt["outcome"]) == ("task-cand", "shadow", "ok")
    [request] = [line for line in in_task if line["message"] == "request"]
    assert request["origin_request_id"] == request_id
    [succeeded] = [line for line in lines if "succeeded" in line["message"] and "shadow_replay" in line["message"]]
    assert (succeeded["logger"], succeeded["request_id"]) == ("celery.app.trace", request_id)
    assert Rollout.objects.get().shadow_requests == 1
