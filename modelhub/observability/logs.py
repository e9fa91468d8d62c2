"""The hub's log lines: plain text in the embedded default, one JSON object a line when
``REDIS_URL`` is set or ``MODELHUB_LOG_FORMAT=json`` (``pam.settings.LOGGING``).

Every line carries the request id of the work in hand (``context``): the request being
answered, or in a Celery task the request that published it. The router's event lines
(``events``) carry their fields besides: in JSON as keys of the object, in plain text as
``key=value`` after the message. An event of another request than the one in hand (a shadow
copy replayed in a task) keeps its own ``request_id``; the one in hand is then
``origin_request_id``."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from .context import request_id_current

FIELDS = "fields"  # the LogRecord attribute that holds an event's fields


class StderrHandler(logging.StreamHandler):
    """Lines to whatever ``sys.stderr`` is when each is written, not the stream it was when
    logging was configured (a test runner swaps it, and closes the one it swapped in)."""

    def __init__(self, level: int = logging.NOTSET):
        logging.Handler.__init__(self, level)

    @property
    def stream(self):
        return sys.stderr


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the work in hand, in the thread that logs
    it (a handler may format it later, elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_current()
        return True


def event_log(logger: logging.Logger, level: int, event: str, fields: dict) -> None:
    """One event line: ``event`` as the message, ``fields`` (none of them None) beside it.
    The record is made without looking up the calling frame (no format here shows it): a
    fifth of a line's cost on the request path."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "", 0, event, (), None, extra={FIELDS: fields}))


def line_fields(record: logging.LogRecord) -> dict:
    """The request id in hand, then the event's fields."""
    in_hand = getattr(record, "request_id", None)
    fields = getattr(record, FIELDS, None)
    line: dict = {"request_id": in_hand} if in_hand else {}
    if fields:
        own = fields.get("request_id")
        if in_hand and own and own != in_hand:
            line["origin_request_id"] = in_hand
        line.update(fields)
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the request id and
    the event's fields; a traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(line_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class PlainFormatter(logging.Formatter):
    """``time level logger message key=value ...`` (the request id first)."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s", **kwargs):
        super().__init__(fmt, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        pairs = " ".join(f"{key}={value}" for key, value in line_fields(record).items())
        return f"{text} {pairs}" if pairs else text
