import logging
import os
import threading

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

app = Celery("pam")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def overrides_gate(**kwargs) -> None:
    """A bad environment override stops the worker's start-up with the system check's
    message, unless MODELHUB_START_DEGRADED. SystemExit, because Celery logs and swallows
    any Exception a signal handler raises. The check reads the database on a thread of its
    own, whose connection it closes: the caller's connection is left as it was (the pool's
    children must not share one, and a worker started inside another program keeps its)."""
    found: list[str | None] = []
    thread = threading.Thread(target=_refusal_into, args=(found,), name="modelhub-worker-gate")
    thread.start()
    thread.join()
    if found and found[0] is not None:
        logging.getLogger("modelhub").error(found[0])
        raise SystemExit(1)


def _refusal_into(found: list) -> None:
    from django.db import connections

    from modelhub.checks import startup_refusal

    try:
        found.append(startup_refusal(process="Celery worker"))
    finally:
        connections.close_all()
