"""The request id of the work in hand, which every log line carries: bound where a request
enters (the API views), sent in the headers of every Celery task published meanwhile, and
bound again in the worker for the task's run. Generic for every task: the tasks themselves
know nothing of it.

The Celery signal handlers below are connected by ``pam.celery``. A task run eagerly (the
embedded default) is not published: it runs in its caller's context, whose id it keeps."""

from __future__ import annotations

from contextvars import ContextVar, Token

REQUEST_ID_HEADER = "modelhub_request_id"  # a task message header; the worker's task.request attribute

_request_id: ContextVar[str | None] = ContextVar("modelhub_request_id", default=None)
_task_tokens: dict[str, Token] = {}  # task id -> the binding its run undoes when it ends


def request_id_current() -> str | None:
    return _request_id.get()


def request_id_bind(request_id: str | None) -> Token:
    """From here to the end of the current task (asyncio task or thread), ``request_id``
    is the work's id. A request's own asyncio task ends with it, so nothing needs undoing."""
    return _request_id.set(request_id)


def task_headers_stamp(headers: dict | None = None, **_) -> None:
    """before_task_publish: the publishing request's id goes with the message."""
    request_id = _request_id.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def task_request_bind(task_id: str | None = None, task=None, **_) -> None:
    """task_prerun: the task runs under the id of the request that published it."""
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    if request_id and task_id:
        _task_tokens[task_id] = _request_id.set(request_id)


def task_request_unbind(task_id: str | None = None, **_) -> None:
    """task_postrun: back to what was bound before the task (nothing, in a worker)."""
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        _request_id.reset(token)
