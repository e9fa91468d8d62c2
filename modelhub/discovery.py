"""Model discovery: each provider's listing, read through its SDK, against the registry.

A model id the registry lacks is added disabled, as a ``candidate`` for the operator to
review; a registered model the provider no longer lists gets ``missing_since`` (shown in
admin) and keeps serving until the operator decides: listings lag and glitch.

Lifecycle: the retirement dates the provider's SDK ships (``providers.retirements``) replace
the stored ones, as an audited change (they change routing: a retired model's successor
takes its place). A model retiring, retired or no longer listed that has no successor gets
a proposal, the newest id of its family the listing has, in its ``lifecycle_note``: the
operator decides; nothing is re-routed by a proposal."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from .audit import Actor, instance_change
from .lifecycle import ACTIVE, lifecycle_state, successor_propose
from .models import AIModel, ConfigChange, Provider
from .providers.base import ListedModel, ProviderError
from .providers.retirements import Retirements, sdk_retirements
from .routing.router import provider_call
from .routing.snapshot import provider_spec
from .runtime import runtime

log = logging.getLogger("modelhub.discovery")

# OpenAI's listing has every model it serves; only chat models belong in a chat registry.
NOT_CHAT = (
    "embedding",
    "whisper",
    "tts",
    "dall-e",
    "moderation",
    "transcribe",
    "image",
    "audio",
    "realtime",
    "davinci",
    "babbage",
    "aqa",
)
TOKEN_PARAM = {"google": AIModel.MaxTokensParam.MAX_OUTPUT_TOKENS}
DISCOVERY = Actor("discovery", ConfigChange.Source.SYSTEM)
PROPOSAL_MARK = "Discovery proposes "
PROPOSAL = PROPOSAL_MARK + "{model_id} as successor ({provider} lists it, {day})."
NOTE_SEPARATOR = " | "  # between a proposal and the note it is put in front of


@dataclass(slots=True)
class DiscoveryReport:
    provider: str
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)
    retirements: list[str] = field(default_factory=list)  # "model: old -> new retirement date"
    proposals: list[str] = field(default_factory=list)  # "model -> proposed successor"
    error: str = ""


def is_chat_model(model_id: str) -> bool:
    return not any(marker in model_id.lower() for marker in NOT_CHAT)


def models_discover() -> list[DiscoveryReport]:
    """List every enabled provider whose key is set and reconcile the registry with it."""
    providers = [p for p in Provider.objects.filter(enabled=True) if provider_spec(p).api_key]
    listings = asyncio.run(_list_all(providers))
    return [_reconcile(provider, listing) for provider, listing in zip(providers, listings, strict=True)]


async def _list_all(providers: list[Provider]) -> list[list[ListedModel] | ProviderError]:
    async def one(provider):
        try:
            return await provider_call(None, runtime().adapters.get(provider_spec(provider)).list_models())
        except ProviderError as error:  # one provider's failure must not stop the rest
            return error

    try:
        return list(await asyncio.gather(*(one(p) for p in providers)))
    finally:
        await runtime().adapters.close()


def _reconcile(provider: Provider, listing: list[ListedModel] | ProviderError) -> DiscoveryReport:
    report = DiscoveryReport(provider.name)
    retirements = sdk_retirements(provider.kind)
    if isinstance(listing, ProviderError):  # a failed listing proves nothing is missing
        report.error = f"{listing.kind.value}: {listing.message}"
        log.warning("discovery: %s listing failed: %s", provider.name, report.error)
        report.retirements = retirements_refresh(provider=provider, retirements=retirements)  # needs no listing
        return report
    listed = {m.model_id: m for m in listing if is_chat_model(m.model_id)}
    known = {m.model_id: m for m in AIModel.objects.filter(provider=provider)}
    now = datetime.now(UTC)
    report.added = _candidates_add(provider, [listed[i] for i in listed.keys() - known.keys()], now)
    report.missing = _flag(provider, [i for i, m in known.items() if i not in listed and not m.missing_since], now)
    report.back = _flag(provider, [i for i, m in known.items() if i in listed and m.missing_since], None)
    report.retirements = retirements_refresh(provider=provider, retirements=retirements)  # new candidates too
    report.proposals = successors_propose(provider=provider, listed=list(listed), today=now.date())
    log.info(
        "discovery: %s added=%s missing=%s back=%s retirements=%s proposals=%s",
        provider.name,
        report.added,
        report.missing,
        report.back,
        report.retirements,
        report.proposals,
    )
    return report


def _candidates_add(provider: Provider, new: list[ListedModel], now: datetime) -> list[str]:
    AIModel.objects.bulk_create(
        [
            AIModel(
                provider=provider,
                model_id=m.model_id,
                display_name=m.display_name or m.model_id,
                context_window=m.context_window or 128_000,
                max_output_tokens=m.max_output_tokens or 4096,
                max_tokens_param=TOKEN_PARAM.get(provider.kind, AIModel.MaxTokensParam.MAX_TOKENS),
                enabled=False,
                status=AIModel.Status.CANDIDATE,
                discovered_at=now,
                description="Found by discovery; review prices and parameters before enabling.",
            )
            for m in new
        ],
        ignore_conflicts=True,
    )
    return sorted(m.model_id for m in new)


def _flag(provider: Provider, model_ids: list[str], missing_since: datetime | None) -> list[str]:
    # A plain update: the flag is for the operator and changes nothing in routing.
    AIModel.objects.filter(provider=provider, model_id__in=model_ids).update(missing_since=missing_since)
    return sorted(model_ids)


def retirements_refresh(*, provider: Provider, retirements: Retirements) -> list[str]:
    """Set the provider's models' retirement dates to the SDK's where they differ, each an
    audited change that reloads routing; returns what moved."""
    moved = []
    for model in AIModel.objects.filter(provider=provider, model_id__in=list(retirements.days)):
        day = retirements.days[model.model_id]
        if model.retires_on == day:
            continue
        moved.append(f"{model.model_id}: {model.retires_on or '-'} -> {day}")
        with instance_change(instance=model, actor=DISCOVERY, action="lifecycle refresh"):
            model.retires_on = day
            proposal, _ = _note_parts(model.lifecycle_note)
            model.lifecycle_note = _note_join(proposal, f"End of life {day} by {retirements.source}.")
            model.save(update_fields=["retires_on", "lifecycle_note"])
    return moved


def successors_propose(*, provider: Provider, listed: list[str], today: date) -> list[str]:
    """For each model that retires, is retired or is no longer listed and has no successor:
    the newest listed id of its family that is not retiring itself, put in front of its
    lifecycle note. A plain update: a note changes nothing in routing."""
    known = {m.model_id: m for m in AIModel.objects.filter(provider=provider)}
    usable = [i for i in listed if i not in known or lifecycle_state(known[i], today) == ACTIVE]
    proposals = []
    for model in known.values():
        if model.successor_id is not None or (lifecycle_state(model, today) == ACTIVE and not model.missing_since):
            continue
        proposed = successor_propose(model.model_id, usable)
        if proposed is None:
            continue
        proposals.append(f"{model.model_id} -> {proposed}")
        proposal = PROPOSAL.format(model_id=proposed, provider=provider.name, day=today)
        note = _note_join(proposal, _note_parts(model.lifecycle_note)[1])
        if note != model.lifecycle_note:
            AIModel.objects.filter(pk=model.pk).update(lifecycle_note=note)
    return sorted(proposals)


def _note_parts(note: str) -> tuple[str, str]:
    """A lifecycle note's proposal (or "") and the rest: where its dates come from."""
    if note.startswith(PROPOSAL_MARK):
        proposal, _, source = note.partition(NOTE_SEPARATOR)
        return proposal, source
    return "", note


def _note_join(proposal: str, source: str) -> str:
    text = NOTE_SEPARATOR.join(part for part in (proposal, source) if part)
    return text[: AIModel._meta.get_field("lifecycle_note").max_length]
