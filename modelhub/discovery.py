"""Model discovery: each provider's listing, read through its SDK, against the registry.

A model id the registry lacks is added disabled, as a ``candidate`` for the operator to
review; a registered model the provider no longer lists gets ``missing_since`` (shown in
admin) and keeps serving until the operator decides: listings lag and glitch."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .models import AIModel, Provider
from .providers.base import ListedModel, ProviderError
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


@dataclass(slots=True)
class DiscoveryReport:
    provider: str
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)
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
    if isinstance(listing, ProviderError):  # a failed listing proves nothing is missing
        report.error = f"{listing.kind.value}: {listing.message}"
        log.warning("discovery: %s listing failed: %s", provider.name, report.error)
        return report
    listed = {m.model_id: m for m in listing if is_chat_model(m.model_id)}
    known = {m.model_id: m for m in AIModel.objects.filter(provider=provider)}
    now = datetime.now(UTC)
    report.added = _candidates_add(provider, [listed[i] for i in listed.keys() - known.keys()], now)
    report.missing = _flag(provider, [i for i, m in known.items() if i not in listed and not m.missing_since], now)
    report.back = _flag(provider, [i for i, m in known.items() if i in listed and m.missing_since], None)
    log.info("discovery: %s added=%s missing=%s back=%s", provider.name, report.added, report.missing, report.back)
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
