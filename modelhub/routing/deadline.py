"""Time limits of one routed request: a per-attempt time to first token, and the route's
total budget that caps the whole failover chain (SarvanOM's 5/7/10 s budgets)."""

from __future__ import annotations

import time

from django.conf import settings


class Deadline:
    """The route's budget runs from ``start()``, called as the first attempt begins, not
    from the request's start: what a request does before it (holding its budget in Redis,
    taking a recovering model's trial token: each up to Redis's timeout when Redis is slow)
    is not taken from its first attempt, which could then be blamed for a whole budget it
    never had."""

    __slots__ = ("budget_ms", "ends_at", "ttft")

    def __init__(self, *, budget_ms: int | None, ttft_ms: int | None, stream: bool):
        self.budget_ms = budget_ms
        self.ends_at: float | None = None
        # The default applies to streams only: a plain call's first token comes with its
        # whole answer, which may rightly take longer; a route's own limit applies to both.
        default = settings.MODELHUB["TTFT_TIMEOUT_SECONDS"] if stream else None
        self.ttft = ttft_ms / 1000 if ttft_ms else default

    def start(self) -> None:
        """Once: later attempts share what the first one left."""
        if self.budget_ms and self.ends_at is None:
            self.ends_at = time.monotonic() + self.budget_ms / 1000

    def attempt_timeout(self) -> tuple[float | None, bool]:
        """Seconds the next attempt may wait for its first token (None: no limit here, the
        provider's timeout applies), and whether the route's deadline is what sets it. None
        of the budget is kept back for the fallbacks: a share would be a shorter time to
        first token than the route's own, cutting (and cooling) a slow but healthy primary;
        a route leaves its fallbacks time with a ``ttft_timeout_ms`` below its budget."""
        if self.ends_at is None:
            return self.ttft, False
        remaining = self.ends_at - time.monotonic()
        if self.ttft is None or remaining <= self.ttft:
            return remaining, True
        return self.ttft, False

    def expired(self) -> bool:
        return self.ends_at is not None and time.monotonic() >= self.ends_at
