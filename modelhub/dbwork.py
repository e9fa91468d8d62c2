"""Database work off the request cycle. Django drops a thread's broken connections when a
request starts and ends (``close_old_connections`` on its request signals); the chat
endpoints skip those signals (``api.asgi``), and websocket consumers never send them, so
their rare database work (a configuration reload, a conversation's history) drops a broken
connection itself, before and after: one broken by a database restart is replaced, not
reused, failing, until the process restarts. (Only broken ones: a healthy connection is
kept, whatever its age, as the thread that holds it lives as long as the process.)"""

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


def fresh_connections(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` with this thread's broken database connections dropped before and after it."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        broken_connections_close()
        try:
            return fn(*args, **kwargs)
        finally:
            broken_connections_close()

    return run
