"""The cyclic garbage collector paused while a burst of chat requests is in flight.

A chat request in flight holds a few hundred objects the collector tracks (its request,
serializer, routing walk, SDK request and response, tasks and generators), and none of them
is garbage until the request ends: an answered chat request leaves no reference cycle behind
(tests/api/test_gcpause.py). With CPython's default thresholds a burst of 1,000 streams ran
about 40 young, 5 middle and 4 full collections while it was being set up, each traversing
every request still in flight: 0.5-1.1 s of one core's CPU that freed nothing, and every
first byte waited for it (bench/README.md, "The garbage collector under a burst").

So once ``pause_at`` chat requests are in flight the automatic collector is switched off,
and back on when no more than half that many are. While it is off, what failures and
disconnects leave in cycles is still bounded, checked as each request begins and ends: a
young collection as soon as the objects allocated since the last one outnumber what the
requests in flight can account for (``OBJECTS_PER_REQUEST`` each), and a full collection
every ``FULL_EVERY_SECONDS`` for as long as the load lasts. A collector switched off before
a pause began stays off."""

from __future__ import annotations

import gc
import time

# Tracked objects a chat request in flight holds, about 3x what a relayed stream was
# measured to hold (~350): more young objects than this many per request in flight are
# garbage a collection can free.
OBJECTS_PER_REQUEST = 1000
FULL_EVERY_SECONDS = 30.0


class GcPause:
    __slots__ = ("pause_at", "resume_at", "paused", "collections", "_full_due")

    def __init__(self, pause_at: int):
        self.pause_at = max(pause_at, 0)  # 0: never pause
        self.resume_at = self.pause_at // 2
        self.paused = False  # the collector is off because of this pause
        self.collections = 0  # collections the bounds forced while paused
        self._full_due = 0.0

    def admitted(self, inflight: int) -> None:
        """A chat request began; ``inflight`` counts it."""
        if self.paused:
            self._bounded(inflight)
        elif self.pause_at and inflight >= self.pause_at and gc.isenabled():
            gc.disable()
            self.paused = True
            self._full_due = time.monotonic() + FULL_EVERY_SECONDS

    def ended(self, inflight: int) -> None:
        """A chat request ended; ``inflight`` no longer counts it."""
        if not self.paused:
            return
        if inflight <= self.resume_at:
            self.paused = False
            gc.enable()
        else:
            self._bounded(inflight)

    def _bounded(self, inflight: int) -> None:
        if time.monotonic() >= self._full_due:
            self.collections += 1
            gc.collect()
            self._full_due = time.monotonic() + FULL_EVERY_SECONDS
        elif gc.get_count()[0] > OBJECTS_PER_REQUEST * max(inflight, 1):
            self.collections += 1
            gc.collect(0)
