"""Prices that stay true: every catalog model's stored input/output price per million tokens
is compared with a maintained price database, the ``genai-prices`` package (pinned in
requirements.txt).

Offline by construction: the package can refresh its data from GitHub, but only through its
``UpdatePrices`` background thread, which this module never starts; and rather than its
``get_snapshot()`` (which would hand back a fetched snapshot if anything in the process had
started that thread) it reads the data bundled in the installed wheel, ``genai_prices.data``.
So a check needs no network, and its answer changes only when the pin is moved.

Our providers map to the database's by kind: anthropic, openai and google are the
database's ``anthropic``, ``openai`` and ``google``. An OpenAI-compatible provider is
recognised by its base URL (the database's API URL patterns, e.g. api.groq.com is ``groq``),
else by its name (``groq``, ``openrouter``, ``deepseek``...); one it cannot place has no
known prices. Within a provider the database's own matching finds the model id (dated ids
included: ``claude-3-5-haiku-20241022`` is its ``claude-3-5-haiku-latest``). A price that
rises past a context length (Gemini Pro, Claude Sonnet 4.5 over 200k tokens) is compared by
its base price, the tiers given in the note.

What a check finds is kept as ``PriceCheck`` rows, at most one pending per model: a price
that differs, or a model with no known price (not in the database, or a zero stored price
the database does not confirm). Accepting a difference saves the model's prices as an
audited change (the config version moves, so every process costs with them from its next
request); dismissing one keeps it from being raised again until the database says something
else. With ``MODELHUB_PRICES_AUTO_APPLY`` true, differences are applied as they are found.
The Celery task ``prices_check`` runs this daily; admin ("Check prices now") and the
``checkprices`` command on demand."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib.metadata import version

from django.conf import settings
from django.db import transaction
from genai_prices import types as gp
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id

from .audit import Actor, Source, instance_change
from .models import AIModel, Provider
from .models.prices import PriceCheck

log = logging.getLogger("modelhub.prices")

PRICES_ACTOR = Actor("price check", Source.SYSTEM)
PRICE_PLACES = Decimal("0.000001")  # the stored prices' scale (6 decimal places)
DATABASE = "genai-prices"
PROVIDER_IDS = {
    Provider.Kind.ANTHROPIC: "anthropic",
    Provider.Kind.OPENAI: "openai",
    Provider.Kind.GOOGLE: "google",
}


@dataclass(frozen=True, slots=True)
class FoundPrice:
    """The database's price of one model: base input/output $ per 1M tokens."""

    input: Decimal
    output: Decimal
    source: str  # "genai-prices 0.2.3 anthropic/claude-3-5-haiku-latest"
    note: str = ""  # the tiers above the base price, if any


@dataclass(slots=True)
class PriceReport:
    """One check's outcome, model by model ("provider/model_id")."""

    confirmed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # differences waiting for an operator
    applied: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    dismissed_before: list[str] = field(default_factory=list)  # the same difference, dismissed earlier

    def summary(self) -> str:
        return (
            f"{len(self.confirmed)} confirmed, {len(self.pending)} pending, {len(self.applied)} applied, "
            f"{len(self.unknown)} unknown, {len(self.dismissed_before)} dismissed earlier"
        )


@cache
def database() -> DataSnapshot:
    """The price data bundled in the installed package (never fetched; see the module)."""
    from genai_prices.data import providers

    return DataSnapshot(providers=providers, from_auto_update=False)


def database_version() -> str:
    return f"{DATABASE} {version('genai-prices')}"


def database_provider(provider: Provider) -> gp.Provider | None:
    """The database's provider for one of ours (see the module for the mapping), or None."""
    snapshot = database()
    known = PROVIDER_IDS.get(provider.kind)
    if known:
        return find_provider_by_id(snapshot.providers, known)
    if provider.base_url:
        by_url = next((p for p in snapshot.providers if re.match(p.api_pattern, provider.base_url)), None)
        if by_url is not None:
            return by_url
    return find_provider_by_id(snapshot.providers, provider.name)


def price_lookup(model: AIModel, *, now: datetime | None = None) -> FoundPrice | None:
    """The database's current base price of ``model``, or None when it has none."""
    found = database_provider(model.provider)
    if found is None:
        return None
    info = found.find_model(model.model_id, all_providers=database().providers)
    if info is None:
        return None
    prices = info.get_prices(now or datetime.now(UTC))
    input_price, output_price = (getattr(prices, key, None) for key in ("input_mtok", "output_mtok"))
    if input_price is None or output_price is None:
        return None  # priced by something else (audio seconds, images): nothing to compare
    note = "; ".join(t for t in (_tiers_text("input", input_price), _tiers_text("output", output_price)) if t)
    return FoundPrice(
        _base(input_price), _base(output_price), f"{database_version()} {found.id}/{info.id}"[:200], note[:300]
    )


def _base(price: Decimal | gp.TieredPrices) -> Decimal:
    value = price.base if isinstance(price, gp.TieredPrices) else price
    return Decimal(value).quantize(PRICE_PLACES)


def _tiers_text(name: str, price: Decimal | gp.TieredPrices) -> str:
    if not isinstance(price, gp.TieredPrices) or not price.tiers:
        return ""
    tiers = ", ".join(f"${t.price} from {t.start:,} tokens" for t in price.tiers)
    return f"{name} ${price.base} base, {tiers}"


def prices_check(
    *, models=None, auto_apply: bool | None = None, actor: Actor = PRICES_ACTOR, now: datetime | None = None
) -> PriceReport:
    """Compare every catalog model (or ``models``) with the database and record what differs
    (see the module); with auto-apply (default: the setting) differences are applied at once."""
    auto_apply = settings.MODELHUB.get("PRICES_AUTO_APPLY", False) if auto_apply is None else auto_apply
    now = now or datetime.now(UTC)
    report = PriceReport()
    queryset = models if models is not None else AIModel.objects.all()
    for model in queryset.select_related("provider").order_by("provider__name", "model_id"):
        _model_check(model, price_lookup(model, now=now), report=report, auto_apply=auto_apply, actor=actor, now=now)
    log.info("price check (%s): %s", database_version(), report.summary())
    return report


def _model_check(
    model: AIModel, found: FoundPrice | None, *, report: PriceReport, auto_apply: bool, actor: Actor, now: datetime
) -> None:
    name = f"{model.provider.name}/{model.model_id}"
    stored = (model.input_price_per_mtok, model.output_price_per_mtok)
    if found is not None and stored == (found.input, found.output):
        _pending_close(model, now)
        report.confirmed.append(name)
        return
    kind = PriceCheck.Kind.UNKNOWN if found is None else PriceCheck.Kind.DIFFERENCE
    values = dict(
        kind=kind,
        stored_input=stored[0],
        stored_output=stored[1],
        found_input=found.input if found else None,
        found_output=found.output if found else None,
    )
    if PriceCheck.objects.filter(model=model, status=PriceCheck.Status.DISMISSED, **values).exists():
        report.dismissed_before.append(name)
        _pending_close(model, now)
        return
    note = found.note if found else _unknown_note(model)
    source = found.source if found else database_version()
    with transaction.atomic():
        check, _ = PriceCheck.objects.select_for_update().update_or_create(
            model=model,
            status=PriceCheck.Status.PENDING,
            defaults=dict(values, source=source, note=note, checked_at=now),
        )
    if kind == PriceCheck.Kind.UNKNOWN:
        report.unknown.append(name)
    elif auto_apply:
        price_apply(check, actor=actor, now=now)
        report.applied.append(name)
    else:
        report.pending.append(name)


def _unknown_note(model: AIModel) -> str:
    zero = not model.input_price_per_mtok and not model.output_price_per_mtok
    where = "its provider" if database_provider(model.provider) is None else "this model"
    return f"{DATABASE} does not know {where}" + ("; no price is stored either (costs show as $0)" if zero else "")


def _pending_close(model: AIModel, now: datetime) -> None:
    """A pending row whose difference is gone (the price was fixed by hand, or the database
    moved back) is closed as dismissed, saying why."""
    PriceCheck.objects.filter(model=model, status=PriceCheck.Status.PENDING).update(
        status=PriceCheck.Status.DISMISSED, resolved_at=now, resolved_by=PRICES_ACTOR.name, note="No longer differs."
    )


class PriceCheckError(ValueError):
    """A check that cannot be accepted or dismissed (already decided, or no price to apply)."""


def price_apply(check: PriceCheck, *, actor: Actor, now: datetime | None = None) -> AIModel:
    """Save the found prices on the model as an audited change (the config version moves)."""
    if check.kind != PriceCheck.Kind.DIFFERENCE or check.found_input is None or check.found_output is None:
        raise PriceCheckError(f"{check.model}: no price to apply.")
    with transaction.atomic():
        check = _pending_locked(check)
        model = AIModel.objects.select_for_update().get(pk=check.model_id)
        with instance_change(instance=model, actor=actor, action="price update"):
            model.input_price_per_mtok, model.output_price_per_mtok = check.found_input, check.found_output
            model.save(update_fields=["input_price_per_mtok", "output_price_per_mtok"])
        _resolve(check, PriceCheck.Status.APPLIED, actor, now)
    log.info("%s: prices set to %s / %s by %s", model, check.found_input, check.found_output, actor.name)
    return model


def price_dismiss(check: PriceCheck, *, actor: Actor, now: datetime | None = None) -> None:
    """Keep the stored price; the same difference is not raised again."""
    with transaction.atomic():
        _resolve(_pending_locked(check), PriceCheck.Status.DISMISSED, actor, now)


def _pending_locked(check: PriceCheck) -> PriceCheck:
    locked = PriceCheck.objects.select_for_update().filter(pk=check.pk, status=PriceCheck.Status.PENDING).first()
    if locked is None:
        status = PriceCheck.objects.filter(pk=check.pk).values_list("status", flat=True).first() or "deleted"
        raise PriceCheckError(f"{check.model}: already {status}.")
    return locked


def _resolve(check: PriceCheck, status: str, actor: Actor, now: datetime | None) -> None:
    check.status, check.resolved_at, check.resolved_by = status, now or datetime.now(UTC), actor.name[:150]
    check.save(update_fields=["status", "resolved_at", "resolved_by"])
