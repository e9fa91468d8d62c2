"""Model lifecycle: where a model stands against its provider's deprecation and retirement
dates, and the chain routing walks once a model is retired (its successor in its place).

Pure functions of the dates, with ``today`` passed in: routing calls ``substitute`` when it
builds its snapshot; the deploy check, the alert task, admin and discovery call the rest.
Models whose dates nobody knows stay ``active``: a blank date never retires anything."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Protocol

from .providers.base import ModelSpec

if TYPE_CHECKING:
    from .routing.snapshot import RouteSpec

ACTIVE, DEPRECATED, RETIRING_SOON, RETIRED = "active", "deprecated", "retiring_soon", "retired"
STATES = (ACTIVE, DEPRECATED, RETIRING_SOON, RETIRED)
WARNING_DAYS = 30  # how long before its retirement a model in use is worth an operator's attention
MAX_HOPS = 8  # successors followed from a retired model; more means a cycle typed in admin


class Dated(Protocol):
    """What ``lifecycle_state`` reads: an ``AIModel`` row and a ``ModelSpec`` both have it."""

    @property
    def deprecated_on(self) -> date | None: ...

    @property
    def retires_on(self) -> date | None: ...


def lifecycle_state(model: Dated, today: date) -> str:
    """``active`` | ``deprecated`` | ``retiring_soon`` (within WARNING_DAYS) | ``retired``.
    A retirement date the provider announced makes a model deprecated even when the day it
    was announced is unknown; a deprecation date still ahead is not in force yet."""
    retires_on, deprecated_on = model.retires_on, model.deprecated_on
    if retires_on is not None and retires_on <= today:
        return RETIRED
    if retires_on is not None and (retires_on - today).days <= WARNING_DAYS:
        return RETIRING_SOON
    if deprecated_on is not None:
        return DEPRECATED if deprecated_on <= today else ACTIVE
    return DEPRECATED if retires_on is not None else ACTIVE


def needs_attention(model: Dated, today: date) -> bool:
    """Retiring within WARNING_DAYS or retired: what the deploy check and the alerts report."""
    return lifecycle_state(model, today) in (RETIRING_SOON, RETIRED)


def state_since(model: Dated, today: date) -> date | None:
    """The day the model's current warning state began (None outside them): an alert is
    raised once per model and state, whichever day the task first sees it."""
    state, retires_on = lifecycle_state(model, today), model.retires_on
    if retires_on is None or state not in (RETIRING_SOON, RETIRED):
        return None
    return retires_on if state == RETIRED else retires_on - timedelta(days=WARNING_DAYS)


def state_text(model: Dated, today: date) -> str:
    """One line for people: "retired on 2026-11-30", "retires on 2026-12-11 (in 10 days)"."""
    state, retires_on = lifecycle_state(model, today), model.retires_on
    if state == RETIRED and retires_on is not None:
        return f"retired on {retires_on}"
    if retires_on is not None:
        days = (retires_on - today).days
        return f"retires on {retires_on} (in {days} day{'s' if days != 1 else ''})"
    if state == DEPRECATED:
        return f"deprecated since {model.deprecated_on}"
    return "active"


def substitute(
    chain: tuple[ModelSpec, ...], models_by_pk: dict[int, ModelSpec], today: date
) -> tuple[tuple[ModelSpec, ...], tuple[tuple[str, str], ...]]:
    """``chain`` with each retired model replaced by its successor, and why, per retired
    model id. The successor takes the retired model's place only when it is enabled (in
    ``models_by_pk``), not retired itself (then its own successor is tried), and not in the
    chain already (a model is tried once per request); otherwise the retired model is
    dropped: a provider answers a retired id with 404, a wasted attempt."""
    if not any(model.retires_on is not None and model.retires_on <= today for model in chain):
        return chain, ()  # the hot case: one pass, no allocation
    taken = {model.pk for model in chain if lifecycle_state(model, today) != RETIRED}
    result: list[ModelSpec] = []
    reasons: list[tuple[str, str]] = []
    for model in chain:
        if lifecycle_state(model, today) != RETIRED:
            result.append(model)
            continue
        heir, why = _heir(model, models_by_pk, today, taken)
        if heir is not None:
            taken.add(heir.pk)
            result.append(heir)
        reasons.append((model.model_id, f"retired on {model.retires_on}; {why}"))
    return tuple(result), tuple(reasons)


def _heir(
    model: ModelSpec, models_by_pk: dict[int, ModelSpec], today: date, taken: set[int]
) -> tuple[ModelSpec | None, str]:
    """The first successor down the line that may serve, or None and why none may."""
    current = model
    for _ in range(MAX_HOPS):
        if current.successor_pk is None:
            return None, "no successor set" if current is model else f"{current.model_id} has no successor"
        successor = models_by_pk.get(current.successor_pk)
        if successor is None:
            return None, "its successor is not enabled"
        if lifecycle_state(successor, today) != RETIRED:
            if successor.pk in taken:
                return None, f"{successor.model_id} is already in the chain"
            return successor, f"{successor.model_id} in its place"
        current = successor
    return None, "its successors form a cycle"


@dataclass(frozen=True, slots=True)
class RouteRisk:
    """An enabled route using a model that retires within WARNING_DAYS or is retired."""

    route: str
    model: ModelSpec
    state: str  # RETIRING_SOON | RETIRED
    successor: str  # what takes its place: "claude-sonnet-4-6 in its place", "no successor set"


def routes_at_risk(routes: Iterable[RouteSpec], models_by_pk: dict[int, ModelSpec], today: date) -> list[RouteRisk]:
    """Each (enabled route, model) pair where the model retires within WARNING_DAYS or is
    retired, routes as routing resolves them (overrides applied): both the models a chain
    still holds and those routing has replaced already (``RouteSpec.replaced``)."""
    risks = []
    for route in routes:
        if not route.enabled:
            continue
        in_chain = {model.pk for model in route.chain}
        for model in route.chain:
            if needs_attention(model, today):
                successor = _successor_text(model, models_by_pk, today, in_chain - {model.pk})
                risks.append(RouteRisk(route.name, model, lifecycle_state(model, today), successor))
        for model, reason in route.replaced:  # "retired on ...; claude-sonnet-4-6 in its place"
            risks.append(RouteRisk(route.name, model, RETIRED, reason.split("; ", 1)[-1]))
    return sorted(risks, key=lambda risk: (risk.route, risk.model.model_id))


def _successor_text(model: ModelSpec, models_by_pk: dict[int, ModelSpec], today: date, taken: set[int]) -> str:
    """What takes (or will take) a model's place once retired, worded as ``substitute`` words it."""
    heir, why = _heir(model, models_by_pk, today, taken)
    return f"{heir.model_id} in its place" if heir is not None else why


# -- successor proposals (discovery) --

_ISO_DAY = re.compile(r"(20\d\d)-(\d\d)-(\d\d)$")  # gpt-5.4-mini-2026-03-17
_STAMP = re.compile(r"20\d{6}")  # claude-sonnet-4-5-20250929
_SIZE = re.compile(r"\d+(x\d+)?[bmk]")  # 70b, 8x7b: part of the family, not a version
_MIXED = re.compile(r"(\d+)([a-z]+)")  # 4o: version 4 of the "o" line
ALIASES = frozenset({"latest"})
UNSTABLE = frozenset({"preview", "exp", "experimental", "beta"})  # never proposed as a successor


@dataclass(frozen=True, slots=True)
class Family:
    """A model id read as its family (the words), its version and its release stamp:
    claude-3-7-sonnet-20250219 and claude-sonnet-4-6 are both ("claude", "sonnet")."""

    words: tuple[str, ...]
    version: tuple[int, ...]
    stamp: str  # YYYYMMDD, or "" for an alias or an undated id


def model_family(model_id: str) -> Family:
    words: list[str] = []
    version: list[int] = []
    stamp = ""
    for part in re.split(r"[-.:_/@]", _ISO_DAY.sub(r"\1\2\3", model_id.lower())):
        mixed = _MIXED.fullmatch(part)
        if _STAMP.fullmatch(part):
            stamp = part
        elif part.isdigit():
            version.append(int(part))
        elif _SIZE.fullmatch(part) or mixed is None:
            if part and part not in ALIASES:
                words.append(part)
        else:
            version.append(int(mixed.group(1)))
            words.append(mixed.group(2))
    return Family(tuple(words), tuple(version), stamp)


def is_newer(candidate: Family, than: Family) -> bool:
    """Same family and a higher version, or the same version released later."""
    if candidate.words != than.words:
        return False
    if candidate.version != than.version:
        return candidate.version > than.version
    return bool(candidate.stamp and than.stamp and candidate.stamp > than.stamp)


def successor_propose(model_id: str, listed: Iterable[str]) -> str | None:
    """The newest id of ``listed`` in ``model_id``'s family that is newer than it, previews
    left out; None when the listing has none. A proposal for the operator, never applied."""
    own = model_family(model_id)
    newer = [
        (family.version, family.stamp, candidate)
        for candidate in listed
        if is_newer(family := model_family(candidate), own) and not UNSTABLE & set(family.words)
    ]
    return max(newer)[2] if newer else None
