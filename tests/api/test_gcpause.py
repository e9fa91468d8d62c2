"""The cyclic garbage collector waits while a burst of chat requests is in flight
(modelhub.api.gcpause): it would traverse every request in flight again and again and free
nothing, because a chat request leaves no reference cycle behind."""

import gc
import threading
import time
import urllib.request
import weakref

import openai
import orjson
import pytest

from modelhub.api import gcpause
from modelhub.api.gcpause import GcPause
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures


@pytest.fixture
def collector():
    """The process's collector as the test found it, restored after it."""
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


class Cycle:
    def __init__(self):
        self.me = self


def test_the_collector_pauses_at_the_mark_and_resumes_when_half_have_ended(collector):
    gc.enable()
    pause = GcPause(4)
    for inflight in (1, 2, 3):
        pause.admitted(inflight)
        assert gc.isenabled()
    pause.admitted(4)
    assert not gc.isenabled() and pause.paused
    pause.admitted(5)
    for inflight in (4, 3):
        pause.ended(inflight)
        assert not gc.isenabled()
    pause.ended(2)
    assert gc.isenabled() and not pause.paused


def test_never_pausing_and_a_collector_the_operator_disabled_stay_as_they_are(collector):
    gc.enable()
    never = GcPause(0)
    for inflight in range(1, 1000):
        never.admitted(inflight)
    assert gc.isenabled() and not never.paused

    gc.disable()
    pause = GcPause(2)
    pause.admitted(2)
    pause.ended(0)
    assert not gc.isenabled()  # not switched on by the pause's end: it never switched it off


def test_while_paused_young_garbage_past_what_the_requests_can_hold_is_collected(collector, monkeypatch):
    monkeypatch.setattr(gcpause, "OBJECTS_PER_REQUEST", 1000)
    gc.enable()
    gc.collect()
    pause = GcPause(2)
    pause.admitted(2)
    assert not gc.isenabled()
    garbage = Cycle()
    gone = weakref.ref(garbage)
    del garbage
    pause.admitted(3)  # a few young objects: no collection
    assert gone() is not None and pause.collections == 0
    held = [[] for _ in range(8000)]  # tracked objects past 1,000 a request in flight
    pause.ended(3)  # checked as requests end too
    assert gone() is None and pause.collections == 1
    assert not gc.isenabled()  # still paused
    del held


def test_a_long_pause_still_collects_old_garbage_in_full(collector, monkeypatch):
    gc.enable()
    pause = GcPause(2)
    pause.admitted(2)
    garbage = Cycle()
    gone = weakref.ref(garbage)
    gc.collect()  # it survives (still referenced) into the oldest generation
    del garbage
    pause.admitted(3)
    assert gone() is not None  # a young collection would not reach it, and none was due
    monkeypatch.setattr(gcpause, "FULL_EVERY_SECONDS", 0.0)
    pause._full_due = 0.0
    pause.ended(2)
    assert gone() is None and pause.collections == 1 and not gc.isenabled()


def test_a_negative_mark_never_pauses(collector):
    gc.enable()
    pause = GcPause(-1)
    for inflight in (1, 0, 5):
        pause.admitted(inflight)
        pause.ended(inflight)
    assert gc.isenabled() and not pause.paused


def _stream(live, body: bytes) -> bytes:
    request = urllib.request.Request(
        f"{live.server.url}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_chat_requests_pauses_the_collector_of_the_serving_process(live, sim, collector, monkeypatch):
    from pam.asgi import api

    monkeypatch.setattr(api, "gc_pause", GcPause(3))
    live.route("pam", [live.model("paced", "openai")])
    sim.set_pace("paced", chunks=3, interval_ms=300)
    gc.enable()
    body = orjson.dumps({"model": "pam", "messages": [{"role": "user", "content": "Hi"}], "stream": True})
    answers, seen = [], []
    threads = [threading.Thread(target=lambda: answers.append(_stream(live, body))) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not seen:
        if api.inflight == 3:
            seen.append(gc.isenabled())
        time.sleep(0.005)
    for thread in threads:
        thread.join(10)
    assert seen == [False]  # three in flight: paused (the server runs in this process)
    assert len(answers) == 3 and all(answer.endswith(b"data: [DONE]\n\n") for answer in answers)
    deadline = time.monotonic() + 5
    while api.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gc.isenabled()


@pytest.mark.django_db(transaction=True)
def test_chat_requests_leave_no_reference_cycles_for_the_collector(live, collector):
    """Why pausing is safe: what a chat request allocates is freed by reference counting
    when it ends. 40 requests (streamed and not) leave no garbage for the cyclic collector
    (measured: none); DRF's view <-> request links, a task's exception and traceback or a
    serializer's fields bound to it would each leave dozens of objects a request."""
    live.route("pam", [live.model("gpt-4o-mini", "openai")])
    client = openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0, timeout=10)
    messages = [{"role": "user", "content": "Hi"}]

    def requests(n: int) -> int:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(n):
                if i % 2:
                    client.chat.completions.create(model="pam", messages=messages)
                else:
                    assert "".join(
                        c.choices[0].delta.content or ""
                        for c in client.chat.completions.create(model="pam", messages=messages, stream=True)
                        if c.choices
                    )
            time.sleep(0.2)  # the server's ledger and stream ends, after the answers
            gc.collect()
            return len(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    gc.disable()  # only the explicit collections above
    requests(4)  # warm: first-use imports, the SDK clients, the snapshot
    none, forty = requests(0), requests(40)
    client.close()
    assert forty - none < 10, f"{forty - none} objects in reference cycles after 40 chat requests"
