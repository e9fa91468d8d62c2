"""Paced answers: a model that streams ``chunks`` pieces ``interval_ms`` apart, as a real
model generates tokens, so that a load test holds streams open for as long as a provider would
(``Pace(50, 30)``: 50 chunks over ~1.5 s). Set per model on the simulator (``set_pace``, the
``--pace MODEL=50x30`` option of ``simupstream``, or ``POST /_sim/pace``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .asgi import send_chunk

MAX_CHUNKS = 100_000


@dataclass(frozen=True, slots=True)
class Pace:
    chunks: int
    interval_ms: float = 0

    def __post_init__(self):
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or not 1 <= self.chunks <= MAX_CHUNKS:
            raise ValueError(f"pace chunks must be a whole number from 1 to {MAX_CHUNKS}, not {self.chunks!r}")
        interval = self.interval_ms
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 60_000:
            raise ValueError(f"pace interval_ms must be a number from 0 to 60000, not {interval!r}")

    @property
    def interval(self) -> float:
        """Seconds between two chunks."""
        return self.interval_ms / 1000


def parse_pace(spec: str) -> tuple[str, Pace]:
    """'gpt-4o=50x30' -> ('gpt-4o', Pace(50, 30)): 50 chunks 30 ms apart (``*`` = every model)."""
    model, sep, what = spec.rpartition("=")
    chunks, x, interval = what.partition("x")
    if not sep or not model or not x:
        raise ValueError(f"expected MODEL=CHUNKSxMILLISECONDS (e.g. '*=50x30'), got {spec!r}")
    try:
        return model, Pace(int(chunks), float(interval))
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None


async def send_paced(send, parts: tuple[list[bytes], list[bytes], list[bytes]], interval: float, more: bool):
    """One write per content chunk of (prelude, content, tail), the prelude with the first and
    the tail with the last, on a fixed schedule ``interval`` apart (a late write does not
    stretch the rest of the answer); ``more`` leaves the body open after the last one."""
    prelude, content, tail = parts
    pieces = list(content) or [b""]
    pieces[0] = b"".join(prelude) + pieces[0]
    pieces[-1] += b"".join(tail)
    loop = asyncio.get_running_loop()
    started, last = loop.time(), len(pieces) - 1
    for index, piece in enumerate(pieces):
        if index:
            await asyncio.sleep(max(0.0, started + index * interval - loop.time()))
        await send_chunk(send, piece, more or index < last)
