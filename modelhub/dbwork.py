"""Database work off the request cycle. Django drops a thread's broken connections when a
request starts and ends (``close_old_connections`` on its request signals); the chat
endpoints skip those signals (``api.asgi``), and websocket consumers never send them, so
their rare database work (a configuration reload, a conversation's history) does it itself:
a connection broken by a database restart is dropped before the work (not reused, failing,
until the process restarts), and after it the thread's connections are closed as at the end
of a request (``CONN_MAX_AGE``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connections

P = ParamSpec("P")
T = TypeVar("T")


def broken_connections_close() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


def old_connections_close() -> None:
    """Django's end-of-request step: broken connections, and those past ``CONN_MAX_AGE``
    (with 0, every one), closed; not one inside a transaction its caller holds open."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def fresh_connections(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` with this thread's broken connections dropped before it, and its old ones
    closed after it, as a request's signals would have."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        broken_connections_close()
        try:
            return fn(*args, **kwargs)
        finally:
            old_connections_close()

    return run
