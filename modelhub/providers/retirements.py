"""What the installed SDKs say about the end of their models: discovery refreshes the
registry's retirement dates from it, so upgrading an SDK is enough to learn a new date.

- The Anthropic SDK keeps a table, ``DEPRECATED_MODELS`` in anthropic.resources.messages
  (model id -> "November 30th, 2026"), and warns on each call to a listed model.
- The OpenAI SDK keeps the dates only as the documentation of its ``ChatModel`` type
  ("Announced shutdown date: 2026-12-11" per group of ids), so that text is read.

A table whose shape changed gives no date rather than a wrong one. Provider kinds without
such a table (Google, OpenAI-compatible endpoints) have none."""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger("modelhub.discovery")

_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")
_OPENAI_DOC = re.compile(r'"""Deprecated values:(.*?)"""', re.S)
_OPENAI_DAY = re.compile(r"Announced\s+shutdown\s+date:\s+(\d{4}-\d{2}-\d{2})")
_QUOTED = re.compile(r'"([^"\s]+)"')


@dataclass(frozen=True, slots=True)
class Retirements:
    """Model id -> the day the provider stops serving it, and where that was read."""

    source: str
    days: dict[str, date] = field(default_factory=dict)


def sdk_retirements(kind: str) -> Retirements:
    """The retirement table the SDK of a provider kind ships; empty when it has none."""
    reader = READERS.get(kind)
    if reader is None:
        return Retirements("")
    try:
        return reader()
    except (ImportError, AttributeError, OSError, ValueError) as exc:  # an SDK that moved its table
        log.warning("discovery: the %s SDK's retirement table could not be read: %s", kind, exc)
        return Retirements("")


def anthropic_retirements() -> Retirements:
    from anthropic.resources.messages import messages

    days = {model_id: _spelled_day(text) for model_id, text in messages.DEPRECATED_MODELS.items()}
    source = f"the Anthropic SDK's DEPRECATED_MODELS table (anthropic {_version('anthropic')})"
    return Retirements(source, {model_id: day for model_id, day in days.items() if day is not None})


def _spelled_day(text: str) -> date | None:
    """'November 30th, 2026' -> 2026-11-30."""
    try:
        return datetime.strptime(_ORDINAL.sub(r"\1", text.strip()), "%B %d, %Y").date()
    except ValueError:
        return None


def openai_retirements() -> Retirements:
    spec = importlib.util.find_spec("openai.types.shared.chat_model")
    if spec is None or spec.origin is None:
        return Retirements("")
    with open(spec.origin, encoding="utf-8") as source_file:
        days = openai_doc_days(source_file.read())
    return Retirements(f"the OpenAI SDK's ChatModel deprecations (openai {_version('openai')})", days)


def openai_doc_days(source: str) -> dict[str, date]:
    """Each id of a '- "id", "id": Announced shutdown date: YYYY-MM-DD.' item of the
    ``ChatModel`` documentation; items without a date (unsupported ids) give none."""
    doc = _OPENAI_DOC.search(source)
    days: dict[str, date] = {}
    for item in (doc.group(1) if doc else "").split("\n- "):
        names, _, rest = item.partition(":")
        day = _OPENAI_DAY.search(item)
        if day is not None and rest:
            days.update(dict.fromkeys(_QUOTED.findall(names), date.fromisoformat(day.group(1))))
    return days


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


READERS = {"anthropic": anthropic_retirements, "openai": openai_retirements}
