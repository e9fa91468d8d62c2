"""The Celery app. Besides the tasks (modelhub.tasks) and their schedules (in the database:
django-celery-beat), it wires what every task shares: the request id of the request that
published a task travels in its headers into the worker's log lines
(modelhub.observability.context), and the worker logs through Django's LOGGING (the hub's
formats) instead of installing its own handlers.

``EmbeddedBeat`` is the embedded default's scheduler (bin/serve): no broker, no worker."""

import functools
import logging
import os
import threading

from celery import Celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun, worker_init

from modelhub.observability.context import task_headers_stamp, task_request_bind, task_request_unbind

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

app = Celery("pam")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
log = logging.getLogger("modelhub.schedule")

before_task_publish.connect(task_headers_stamp, weak=False)
task_prerun.connect(task_request_bind, weak=False)
task_postrun.connect(task_request_unbind, weak=False)


@setup_logging.connect
def logging_as_configured(loglevel=None, **kwargs) -> None:
    """Handled here, so Celery leaves logging as Django configured it (settings.LOGGING: the
    hub's plain or JSON lines, the request id on each), its own loggers included; the
    worker's --loglevel sets theirs."""
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)


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


class EmbeddedBeat:
    """Celery beat in a thread of this process, reading the database schedules as ``celery
    beat`` does (edits in admin apply within its next sync), and running each due task
    right there (``Task.apply``): no broker and no worker, so the embedded default's probes,
    rollups and alerts run on their schedules in bin/serve's one process. A task runs to its
    end before the next is looked at; the web requests go on meanwhile in the event loop's
    thread. Production keeps ``celery worker`` and ``celery beat``."""

    def __init__(self, *, max_interval: float = 5.0):
        from celery.beat import Service

        app.loader.import_default_modules()  # the tasks (autodiscovered), as a worker loads them
        self.service = Service(
            app, max_interval=max_interval, scheduler_cls=in_process_scheduler(), remote_control=False
        )
        self.thread = threading.Thread(target=self.service.start, name="modelhub-beat", daemon=True)

    def start(self) -> "EmbeddedBeat":
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the task running now, if any, and save the schedule's state."""
        self.service.stop()
        self.thread.join(timeout)


@functools.cache
def in_process_scheduler() -> type:
    """django-celery-beat's scheduler, running each due task in its own thread instead of
    sending it (made on first use: it needs Django's apps ready)."""
    from django.db import close_old_connections
    from django_celery_beat.schedulers import DatabaseScheduler

    class InProcessScheduler(DatabaseScheduler):
        producer = None  # nothing is published

        def apply_entry(self, entry, producer=None):
            task = self.app.tasks.get(entry.task)
            if task is None:
                log.error("scheduled task %s: no such task", entry.task)
                return
            log.info("running scheduled task %s", entry.name)
            try:
                result = task.apply(entry.args, entry.kwargs, throw=False)
                if result.failed():
                    log.error("scheduled task %s failed:\n%s", entry.name, result.traceback)
            finally:
                close_old_connections()  # as a worker does after each task

    return InProcessScheduler
