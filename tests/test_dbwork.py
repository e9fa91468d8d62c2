"""Database work off the request cycle drops a connection that broke (a database restart)
instead of failing on it until the process restarts: the chat endpoints and websockets send
no request signals, whose receivers would otherwise do it."""

import threading

import pytest
from django.db import OperationalError, connection
from django.db.utils import InterfaceError

from modelhub.dbwork import fresh_connections
from modelhub.models import AIModel

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite connections do not break"),
]


def _in_a_thread(fn):
    """Run ``fn`` on a thread of its own (its own connection), as asgiref's sync thread does."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return outcome


def _break_then(query):
    """Open this thread's connection, break it as a database restart would (the server side
    gone, the failure marked on it), then query."""

    def run():
        AIModel.objects.count()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        except (OperationalError, InterfaceError):
            pass  # the server ended this very connection while answering
        return query()

    return run


def test_without_it_the_broken_connection_keeps_failing():
    outcome = _in_a_thread(_break_then(lambda: AIModel.objects.count()))
    assert isinstance(outcome.get("error"), (OperationalError, InterfaceError))


def test_with_it_the_work_gets_a_new_connection():
    outcome = _in_a_thread(_break_then(fresh_connections(lambda: AIModel.objects.count())))
    assert outcome.get("error") is None and outcome["value"] >= 0
