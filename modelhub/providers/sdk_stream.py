"""The loop every adapter's ``stream()`` runs: SDK stream items in, text events out, the
provider's usage and finish reason folded into the last event, failures normalised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from . import errors
from .base import ProviderError, StreamEvent


async def sdk_stream(
    open_stream: Callable[[], Awaitable],
    apply: Callable[[Any, StreamEvent], str | StreamEvent | None],
    *,
    model_id: str,
    expected: tuple[type[BaseException], ...],
    convert: Callable[[BaseException], ProviderError],
) -> AsyncIterator[StreamEvent]:
    """``apply(item, end)`` returns the item's text (or an event with tool-call deltas, or
    None) and records usage/finish on ``end``."""
    try:
        items = await open_stream()
        try:
            end = StreamEvent(last=True, model=model_id)
            async for item in items:
                piece = apply(item, end)
                if piece:
                    yield StreamEvent(piece) if isinstance(piece, str) else piece
        finally:
            await _close(items)
    except (AttributeError, KeyError, TypeError) as exc:
        raise errors.malformed(exc) from exc
    except expected as exc:
        raise convert(exc) from exc
    yield end


async def _close(items) -> None:
    close = getattr(items, "aclose", None) or items.close  # the SDKs name it differently
    await close()
