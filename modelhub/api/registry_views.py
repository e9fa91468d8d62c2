"""The model registry, read by API clients (the SarvanOM document's registry reads):
``GET /api/v1/models/`` (filtered by capability, provider, lifecycle state and route) and
``GET /api/v1/models/<model_id>/``: what each model can do, what it costs, where it stands
in its lifecycle, the routes it serves and its live statistics.

The registry is the hub's routable catalog: the models of the routing snapshot (enabled,
of an enabled provider, not retired by an operator), so what it says is what chat does.
Any valid key may read it, and a key's route restrictions do not hide models (a model is
not a secret; the route is what a key is allowed): they hide the *routes* a key may not
use, in a model's ``routes`` and in the ``route`` filter, which answers such a route as it
answers an unknown one, so a limited key cannot tell which routes exist. Staff keys see
every route.

Cost of a read: the snapshot (no query), the live statistics of the models listed (one
store read, in a worker thread: Redis must not hold the event loop), and the few fields
the snapshot does not carry (status, lifecycle note, a successor that is not enabled),
read once per configuration version and kept with that snapshot."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from ..lifecycle import STATES, lifecycle_state
from ..models import AIModel, Provider
from ..providers.base import ModelSpec
from ..routing.health import COOLING_DOWN, HALF_OPEN, HEALTHY
from ..routing.snapshot import KeySpec, Snapshot
from ..runtime import runtime
from ..stats import NO_REQUESTS, ModelStats, stats_key, window_seconds
from .admin_serializers import ModelStatsOutput
from .base import HubView
from .serializers import FastOutputSerializer, NativeErrorSerializer

CAPABILITIES = ("tools", "vision", "json_schema", "streaming")
PROVIDER_KINDS = tuple(Provider.Kind.values)
TAGS = ["models"]


# --- what the snapshot does not carry ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """A model's fields that routing does not need, read from the database."""

    status: str | None = None
    note: str = ""
    successor: str | None = None


NOT_READ = Stored()
_stored_cache: tuple[Snapshot, dict[int, Stored]] | None = None


def _stored_read(pks: list[int]) -> dict[int, Stored]:
    rows = AIModel.objects.filter(pk__in=pks).values_list("pk", "status", "lifecycle_note", "successor__model_id")
    return {pk: Stored(status, note, successor) for pk, status, note, successor in rows}


async def stored_of(snapshot: Snapshot) -> dict[int, Stored]:
    """The stored fields of the snapshot's models: one query per configuration version (a
    change to a model bumps it, and the next snapshot reads them again). With the database
    down the registry still answers, without them (and reads them on the next request)."""
    global _stored_cache
    cached = _stored_cache
    if cached is not None and cached[0] is snapshot:
        return cached[1]
    pks = sorted({spec.pk for spec in snapshot.models.values()})
    try:
        table = await sync_to_async(_stored_read)(pks)
    except DatabaseError:
        return {}
    _stored_cache = (snapshot, table)
    return table


# --- the request's view of the registry ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Registry:
    """What one read needs: the snapshot's models, the routes this key may see (with each
    model's place in them), the stored fields, today and the health board."""

    snapshot: Snapshot
    key: KeySpec
    stored: dict[int, Stored]
    today: date
    now: float

    def models(self) -> list[ModelSpec]:
        unique = {spec.pk: spec for spec in self.snapshot.models.values()}
        return sorted(unique.values(), key=lambda m: (m.provider.name, m.model_id))

    def visible_routes(self) -> list[str]:
        return [name for name in self.snapshot.routes if self.key.is_staff or self.key.may_use(name)]

    def memberships(self) -> dict[int, list[dict]]:
        """Model pk -> the visible routes whose chain (as chat walks it) holds the model."""
        found: dict[int, list[dict]] = {}
        for name in sorted(self.visible_routes()):
            route = self.snapshot.routes[name]
            for position, model in enumerate(route.chain):
                found.setdefault(model.pk, []).append({"route": name, "position": position, "enabled": route.enabled})
        return found

    def successor(self, spec: ModelSpec) -> str | None:
        stored = self.stored.get(spec.pk)
        if stored is not None:
            return stored.successor
        heir = next((m for m in self.snapshot.models.values() if m.pk == spec.successor_pk), None)
        return heir.model_id if heir is not None else None


async def registry_of(view: HubView, request) -> Registry:
    return Registry(view.snapshot, request.auth, await stored_of(view.snapshot), datetime.now(UTC).date(), time.time())


async def figures_of(keys: list[str]) -> dict[str, ModelStats]:
    """The live statistics of these models, read in a worker thread (Redis, when shared)."""
    stats = runtime().stats
    return await asyncio.to_thread(stats.read, keys) if keys else {}


# --- filters -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    capabilities: frozenset[str] = frozenset()
    provider: str | None = None
    lifecycle: str | None = None
    route: str | None = None

    def keeps(self, spec: ModelSpec, registry: Registry, routes: dict[int, list[dict]]) -> bool:
        return (
            all(_capable(spec, capability) for capability in self.capabilities)
            and (self.provider is None or self.provider in (spec.provider.name, spec.provider.kind))
            and (self.lifecycle is None or lifecycle_state(spec, registry.today) == self.lifecycle)
            and (self.route is None or any(r["route"] == self.route for r in routes.get(spec.pk, ())))
        )


def _capable(spec: ModelSpec, capability: str) -> bool:
    return bool(getattr(spec, f"supports_{capability}"))


def _invalid(param: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({param: [message]})


def filters_parse(query, registry: Registry) -> Filters:
    """The query's filters; an unknown value is a 400 naming its parameter. ``capability``
    may repeat or list values with commas (all must hold); the others take one value."""
    capabilities = [part.strip() for value in query.getlist("capability") for part in value.split(",")]
    wrong = [c for c in capabilities if c not in CAPABILITIES]
    if wrong:
        raise _invalid("capability", f"Unknown capability '{wrong[0]}': one of {', '.join(CAPABILITIES)}.")
    provider, lifecycle, route = (query.get(name) for name in ("provider", "lifecycle", "route"))
    providers = {spec.provider.name for spec in registry.snapshot.models.values()} | set(PROVIDER_KINDS)
    if provider is not None and provider not in providers:
        raise _invalid(
            "provider", f"Unknown provider '{provider}': a provider name or one of {', '.join(PROVIDER_KINDS)}."
        )
    if lifecycle is not None and lifecycle not in STATES:
        raise _invalid("lifecycle", f"Unknown lifecycle state '{lifecycle}': one of {', '.join(STATES)}.")
    if route is not None and route not in registry.visible_routes():
        raise _invalid("route", f"Unknown route '{route}'.")
    return Filters(frozenset(capabilities), provider, lifecycle, route)


# --- output --------------------------------------------------------------------------


class RegistryCapabilitiesOutput(serializers.Serializer):
    tools = serializers.BooleanField(help_text="Takes tools (function calling).")
    vision = serializers.BooleanField(help_text="Takes images in user messages.")
    json_schema = serializers.BooleanField(help_text='Answers to a JSON schema (response_format "json_schema").')
    streaming = serializers.BooleanField(help_text="Streams its answer.")
    temperature = serializers.BooleanField(help_text="Takes a temperature (dropped for it otherwise).")
    params_unsupported = serializers.ListField(
        child=serializers.CharField(), help_text='Optional parameters never sent to it, e.g. ["top_p"].'
    )


class RegistryPricesOutput(serializers.Serializer):
    input_per_mtok = serializers.FloatField(help_text="USD per million input tokens.")
    output_per_mtok = serializers.FloatField(help_text="USD per million output tokens.")


class RegistryLifecycleOutput(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=STATES,
        help_text="active, deprecated, retiring_soon (retires within 30 days) or retired (routing puts its "
        "successor in its place).",
    )
    deprecated_on = serializers.DateField(allow_null=True, help_text="When the provider deprecated it.")
    retires_on = serializers.DateField(allow_null=True, help_text="When the provider stops serving it.")
    successor = serializers.CharField(allow_null=True, help_text="The model id that takes its place once retired.")
    note = serializers.CharField(allow_blank=True, help_text="Where the dates come from, or why it is flagged.")


class RegistryRouteOutput(serializers.Serializer):
    route = serializers.CharField()
    position = serializers.IntegerField(help_text="Its place in the route's chain as chat walks it; 0 is the primary.")
    enabled = serializers.BooleanField(help_text="Whether the route itself is enabled.")


class RegistryHealthOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=(HEALTHY, COOLING_DOWN, HALF_OPEN))
    available = serializers.BooleanField(help_text="False while it cools down after failures.")


class RegistryModelOutput(FastOutputSerializer):
    """One model of the registry: ``represent`` takes (spec, registry, routes, figures)."""

    id = serializers.CharField(help_text='The model id, as "model" in a chat request takes it.')
    qualified_id = serializers.CharField(help_text='"provider/model_id": unique across providers.')
    provider = serializers.CharField(help_text="The provider's name in this hub.")
    provider_kind = serializers.ChoiceField(choices=PROVIDER_KINDS, help_text="The provider's API.")
    display_name = serializers.CharField()
    enabled = serializers.BooleanField(help_text="Always true: the registry lists the models routing may use.")
    status = serializers.ChoiceField(
        choices=AIModel.Status.values, allow_null=True, help_text="The catalog status (null: database unavailable)."
    )
    health = RegistryHealthOutput()
    capabilities = RegistryCapabilitiesOutput()
    context_window = serializers.IntegerField(help_text="Tokens.")
    max_output_tokens = serializers.IntegerField(help_text="Tokens.")
    prices = RegistryPricesOutput()
    lifecycle = RegistryLifecycleOutput()
    routes = RegistryRouteOutput(
        many=True, help_text="The routes (this key may use) whose chain holds the model, by name."
    )
    stats = ModelStatsOutput(help_text="Live statistics over the window, every process's attempts together.")

    def represent(self, item: tuple) -> dict:
        return model_out(*item)


def model_out(spec: ModelSpec, registry: Registry, routes: list[dict], figures: ModelStats) -> dict:
    stored = registry.stored.get(spec.pk, NOT_READ)
    health = runtime().routing.board.get(spec.pk)
    return {
        "id": spec.model_id,
        "qualified_id": stats_key(spec.provider.name, spec.model_id),
        "provider": spec.provider.name,
        "provider_kind": spec.provider.kind,
        "display_name": spec.display_name,
        "enabled": True,
        "status": stored.status,
        "health": {"state": health.effective_state(registry.now), "available": health.available(registry.now)},
        "capabilities": {
            "tools": spec.supports_tools,
            "vision": spec.supports_vision,
            "json_schema": spec.supports_json_schema,
            "streaming": spec.supports_streaming,
            "temperature": spec.supports_temperature,
            "params_unsupported": sorted(spec.params_unsupported),
        },
        "context_window": spec.context_window,
        "max_output_tokens": spec.max_output_tokens,
        "prices": {
            "input_per_mtok": float(spec.input_price_per_mtok),
            "output_per_mtok": float(spec.output_price_per_mtok),
        },
        "lifecycle": {
            "state": lifecycle_state(spec, registry.today),
            "deprecated_on": _day(spec.deprecated_on),
            "retires_on": _day(spec.retires_on),
            "successor": registry.successor(spec),
            "note": stored.note,
        },
        "routes": routes,
        "stats": stats_out(figures),
    }


def _day(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def stats_out(figures: ModelStats) -> dict:
    out = {"window_seconds": window_seconds(), **asdict(figures)}
    cost = out["cost_per_request"]
    out["cost_per_request"] = None if cost is None else float(cost)
    return out


class RegistryListOutput(FastOutputSerializer):
    count = serializers.IntegerField(help_text="How many models match the filters.")
    models = RegistryModelOutput(many=True)

    def represent(self, items: list[tuple]) -> dict:
        return {"count": len(items), "models": [model_out(*item) for item in items]}


# --- views ---------------------------------------------------------------------------

READ_ERRORS = {
    401: OpenApiResponse(NativeErrorSerializer, description="Missing, invalid or expired API key."),
}
FILTERS = [
    OpenApiParameter(
        "capability",
        OpenApiTypes.STR,
        enum=CAPABILITIES,
        many=True,
        description="Models with every capability given (repeat it, or list them with commas).",
    ),
    OpenApiParameter("provider", OpenApiTypes.STR, description="A provider's name or kind (anthropic, openai, ...)."),
    OpenApiParameter("lifecycle", OpenApiTypes.STR, enum=STATES, description="Models in this lifecycle state."),
    OpenApiParameter("route", OpenApiTypes.STR, description="Models in this route's chain."),
]


class RegistryView(HubView):
    """Reads for any valid key; not counted against its rate (nothing is called)."""

    throttle_classes: list = []


class ModelRegistryListView(RegistryView):
    OutputSerializer = RegistryListOutput

    @extend_schema(
        operation_id="models_registry_list",
        tags=TAGS,
        parameters=FILTERS,
        responses={
            200: RegistryListOutput,
            400: OpenApiResponse(NativeErrorSerializer, description="An unknown filter value (param names it)."),
            **READ_ERRORS,
        },
    )
    async def get(self, request):
        registry = await registry_of(self, request)
        filters = filters_parse(request.query_params, registry)
        routes = registry.memberships()
        models = [spec for spec in registry.models() if filters.keeps(spec, registry, routes)]
        found = await figures_of([stats_key(m.provider.name, m.model_id) for m in models])
        items = [
            (m, registry, routes.get(m.pk, []), found.get(stats_key(m.provider.name, m.model_id), NO_REQUESTS))
            for m in models
        ]
        return Response(self.OutputSerializer(items).data)


class ModelRegistryDetailView(RegistryView):
    OutputSerializer = RegistryModelOutput

    @extend_schema(
        operation_id="models_registry_detail",
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "model_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description='A model id, or "provider/model_id"; it may hold "/" and dots.',
            )
        ],
        responses={
            200: RegistryModelOutput,
            404: OpenApiResponse(NativeErrorSerializer, description="No such model in the registry."),
            **READ_ERRORS,
        },
    )
    async def get(self, request, model_id: str):
        spec = self.snapshot.models.get(model_id)
        if spec is None:
            raise exceptions.NotFound(f"Unknown model '{model_id}'.")
        registry = await registry_of(self, request)
        key = stats_key(spec.provider.name, spec.model_id)
        found = await figures_of([key])
        item = (spec, registry, registry.memberships().get(spec.pk, []), found.get(key, NO_REQUESTS))
        return Response(self.OutputSerializer(item).data)
