"""How the console shows things, shared by the pages and admin: money, milliseconds and
shares as text, the health badge, and a configuration change as a diff."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from ..routing.health import COOLING_DOWN, HALF_OPEN, HEALTHY, Health

SUMMARY_CHARS = 160


def usd(value: Decimal | None) -> str:
    """Display-only rounding to 8 decimals, trailing zeros trimmed to cents."""
    if value is None:
        return "-"
    whole, _, fraction = f"{value:.8f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def hhmmss(moment: datetime | float) -> str:
    """A UTC time of day; ``moment`` a datetime or epoch seconds."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return f"{moment.astimezone(UTC):%H:%M:%S}"


# --- the health badge ------------------------------------------------------------------


def badge(state: str, until: datetime | float | None = None, title: str = "") -> dict:
    """Healthy; cooling down until HH:MM:SS; half open. ``state`` is the effective one: a
    cooldown that has run out is half open (the next request is the trial)."""
    if state == COOLING_DOWN:
        text = f"cooling down until {hhmmss(until)}" if until else "cooling down"
    else:
        text = {HEALTHY: "healthy", HALF_OPEN: "half open"}[state]
    return {"state": state, "text": text, "title": title}


def board_badge(health: Health, now: float) -> dict:
    """The badge of a model as this worker's routing sees it."""
    state = health.effective_state(now)
    return badge(state, health.cooldown_until, health.cooldown_reason or health.last_error_kind)


def badge_html(shown: dict) -> SafeString:
    return render_to_string("modelhub/includes/health_badge.html", {"badge": shown})


# --- a configuration change as a diff --------------------------------------------------


@dataclass(frozen=True)
class ChainLine:
    """One model of a chain change: where it was and is (1-based; None: not in that chain)."""

    model: str
    before: int | None
    after: int | None
    was_enabled: bool | None
    is_enabled: bool | None

    @property
    def change(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        if self.was_enabled != self.is_enabled:
            return "enabled" if self.is_enabled else "disabled"
        return "moved" if self.before != self.after else ""


def _model_name(item: dict) -> str:
    return item["model"].split("/", 1)[-1]


def chain_diff(before: list[dict] | None, after: list[dict] | None) -> list[ChainLine]:
    """Each model of either chain, in the new chain's order, then the removed ones."""
    old = {_model_name(i): (n, i["enabled"]) for n, i in enumerate(before or (), 1)}
    new = {_model_name(i): (n, i["enabled"]) for n, i in enumerate(after or (), 1)}
    lines = []
    for name in [*new, *(name for name in old if name not in new)]:
        (was_at, was_on), (now_at, now_on) = old.get(name, (None, None)), new.get(name, (None, None))
        lines.append(ChainLine(name, was_at, now_at, was_on, now_on))
    return lines


def _chain(value) -> list[dict] | None:
    return value.get("chain") if isinstance(value, dict) else None


def _fields(value) -> dict:
    """The plain fields of a recorded state: a route change keeps them under "route"."""
    if not isinstance(value, dict):
        return {}
    inner = value.get("route")
    return inner if isinstance(inner, dict) else {k: v for k, v in value.items() if k != "chain"}


def field_diff(before, after) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field the change touched (the chain apart)."""
    old, new = _fields(before), _fields(after)
    names = [name for name in {**old, **new} if old.get(name) != new.get(name)]
    return [(name, _shown(old.get(name)), _shown(new.get(name))) for name in names]


def _shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in sorted(value.items()))
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def change_summary(before, after) -> str:
    """One line: the new chain and what changed in it ("b → a (off) → c (b 2 → 1; a disabled;
    c added)"), the fields' changes ("enabled: true → false"), or "added" / "deleted"; cut at
    SUMMARY_CHARS."""
    if before is None or after is None:
        return "deleted" if before is not None else "added" if after is not None else "-"
    parts = []
    if _chain(before) is not None or _chain(after) is not None:
        parts.append(_chain_text(_chain(before), _chain(after)))
    parts += [f"{name}: {old} → {new}" for name, old, new in field_diff(before, after)]
    text = "; ".join(parts) or "no change"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _chain_text(before: list[dict] | None, after: list[dict] | None) -> str:
    now = " → ".join(_model_name(i) + ("" if i["enabled"] else " (off)") for i in after or ()) or "(empty)"
    changes = [_line_text(line) for line in chain_diff(before, after) if line.change]
    return f"{now} ({'; '.join(changes)})" if changes else now


def _line_text(line: ChainLine) -> str:
    if line.change == "moved":
        return f"{line.model} {line.before} → {line.after}"
    return f"{line.model} {line.change}"


def change_html(before, after) -> SafeString:
    """The change as tables: the chain before and after, side by side, and the fields."""
    chain = None
    if _chain(before) is not None or _chain(after) is not None:
        chain = chain_diff(_chain(before), _chain(after))
    return render_to_string("modelhub/includes/change_diff.html", {"chain": chain, "fields": field_diff(before, after)})
