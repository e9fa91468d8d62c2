"""The admin API (``/api/v1/admin/models/``), shaped as the PAM hot-swap document gives it.

Staff only: an admin session of a staff user, or ``Authorization: Bearer <key>`` of a key
whose user is staff. What it reports is what chat does: the route's chain and health come
from this worker's routing snapshot (reloaded first if the configuration moved), with the
environment's overrides applied."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import audit, selectors, services
from ..models import AIModel, Route
from ..stats import NO_REQUESTS, ModelStats, stats_key, stats_read, window_seconds
from .admin_serializers import STATES, ModelStatsOutput, RouteConfigOutput, RouteQuery, RouteSlugField, admin_errors

UPDATE_ENV_NOTE = (
    "The change is stored in the database: it survives restarts and reaches every "
    "worker, whatever update_env says (environment variables are never edited)."
)


class IsStaff(BasePermission):
    message = "Staff only: sign in to admin as a staff user, or use a staff user's API key."

    def has_permission(self, request, view):
        user = request.user
        return bool(user is not None and user.is_active and user.is_staff)


class AdminView(APIView):
    permission_classes = [IsStaff]
    InputSerializer: type[serializers.Serializer]

    def validated(self, data) -> dict:
        serializer = self.InputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def route_get(name: str) -> Route:
    route = selectors.route_get_by_name(name=name)
    if route is None:
        raise exceptions.NotFound(f"Unknown route '{name}'.")
    return route


# --- reads -------------------------------------------------------------------------


def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def model_config(spec) -> dict:
    return {
        "display_name": spec.display_name,
        "provider": spec.provider.name,
        "provider_kind": spec.provider.kind,
        "cost_per_1m_input": float(spec.input_price_per_mtok),
        "cost_per_1m_output": float(spec.output_price_per_mtok),
        "context_window": spec.context_window,
        "max_output_tokens": spec.max_output_tokens,
        "max_tokens_param": spec.max_tokens_param,
        "supports_temperature": spec.supports_temperature,
        "supports_streaming": spec.supports_streaming,
        "env_suffix": spec.env_suffix,
        "key_set": bool(spec.provider.api_key),
    }


def chain_item(spec, board, now: float) -> dict:
    health = board.get(spec.pk)
    return {
        "id": spec.model_id,
        "config": model_config(spec),
        "healthy": health.available(now),
        "state": health.effective_state(now),
        "cooldown_until": _iso(health.cooldown_until),
    }


def route_config(route: Route) -> dict:
    """The route as chat sees it now: primary, fallbacks, health, overrides in force."""
    snapshot, board = selectors.routing_snapshot(), selectors.health_board()
    spec, now = snapshot.routes.get(route.name), time.time()
    items = [chain_item(m, board, now) for m in (spec.chain if spec else ())]
    override = spec.override if spec else None
    return {
        "route": route.name,
        "enabled": route.enabled,
        "primary_model": items[0] if items else None,
        "fallback_models": items[1:],
        "total_models": len(items),
        "healthy_models": sum(i["healthy"] for i in items),
        "override": override,
        "overrides": override.split("; ") if override else [],
        "stored_chain": selectors.route_chain_stored(route=route),
        "fallback_route": spec.fallback_name if spec else None,
        "fallback_route_models": [chain_item(m, board, now) for m in (spec.fallback_chain if spec else ())],
        "version": snapshot.version,
    }


def model_available(model: AIModel, position: int | None) -> dict:
    return {
        "model_id": model.model_id,
        "name": model.display_name or model.model_id,
        "provider": model.provider.name,
        "cost_per_1m_input": float(model.input_price_per_mtok),
        "cost_per_1m_output": float(model.output_price_per_mtok),
        "description": model.description,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "supports_tools": model.supports_tools,
        "supports_streaming": model.supports_streaming,
        "status": model.status,
        "env_suffix": model.env_suffix,
        "route_position": position,
    }


def model_health(model: AIModel, board, now: float, position: int | None, figures: ModelStats) -> dict:
    health, row = board.get(model.pk), getattr(model, "health", None)
    error = {"kind": health.last_error_kind, "message": health.last_error_message} if health.last_error_kind else None
    stats = audit.state_of(row) or {}
    return {
        "model_id": model.model_id,
        "model_name": model.display_name or model.model_id,
        "provider": model.provider.name,
        "enabled": model.enabled,
        "is_healthy": health.available(now),
        "state": health.effective_state(now),
        "cooldown_until": _iso(health.cooldown_until),
        "consecutive_failures": health.consecutive_failures,
        "cooldown_reason": health.cooldown_reason or None,
        "last_error": error,
        "last_success_at": stats.get("last_success_at"),
        "last_probe_at": stats.get("last_probe_at"),
        "success_rate": row.success_rate if row else None,
        "route_position": position,
        "stats": {"window_seconds": window_seconds(), **asdict(figures)},
    }


# --- views -------------------------------------------------------------------------


class ConfigView(AdminView):
    """The route as chat sees it now: primary, fallbacks (each with its configuration and
    health), the environment overrides in force, and the chain as stored."""

    InputSerializer = RouteQuery
    OutputSerializer = RouteConfigOutput

    @extend_schema(
        operation_id="admin_models_config",
        tags=["admin API (staff)"],
        parameters=[RouteQuery],
        responses={200: RouteConfigOutput, **admin_errors()},
    )
    def get(self, request):
        route = route_get(self.validated(request.query_params)["route"])
        return Response(self.OutputSerializer(route_config(route)).data)


class AvailableModelOutput(serializers.Serializer):
    model_id = serializers.CharField()
    name = serializers.CharField(help_text="The display name, else the model id.")
    provider = serializers.CharField()
    cost_per_1m_input = serializers.FloatField(help_text="USD per million input tokens.")
    cost_per_1m_output = serializers.FloatField(help_text="USD per million output tokens.")
    description = serializers.CharField(allow_blank=True)
    context_window = serializers.IntegerField()
    max_output_tokens = serializers.IntegerField()
    supports_tools = serializers.BooleanField()
    supports_streaming = serializers.BooleanField()
    status = serializers.CharField(help_text="candidate, active or deprecated (retired models are not listed).")
    env_suffix = serializers.CharField(allow_blank=True)
    route_position = serializers.IntegerField(
        allow_null=True, help_text="Its place in the route's chain (0: primary), or null."
    )


class AvailableView(AdminView):
    """The models routing may use (enabled, of an enabled provider, not retired), with
    their prices and their place in the route's chain."""

    InputSerializer = RouteQuery
    OutputSerializer = AvailableModelOutput

    @extend_schema(
        operation_id="admin_models_available",
        tags=["admin API (staff)"],
        parameters=[RouteQuery],
        responses={200: AvailableModelOutput(many=True), **admin_errors()},
    )
    def get(self, request):
        route = route_get(self.validated(request.query_params)["route"])
        positions = selectors.route_positions(name=route.name)
        models = [model_available(m, positions.get(m.pk)) for m in selectors.models_available()]
        return Response(self.OutputSerializer(models, many=True).data)


class ModelErrorOutput(serializers.Serializer):
    kind = serializers.CharField(help_text="e.g. rate_limited, server, timeout.")
    message = serializers.CharField()


class ModelHealthOutput(serializers.Serializer):
    model_id = serializers.CharField()
    model_name = serializers.CharField(help_text="The display name, else the model id.")
    provider = serializers.CharField()
    enabled = serializers.BooleanField()
    is_healthy = serializers.BooleanField(help_text="Not cooling down: chat may call it now.")
    state = serializers.ChoiceField(choices=STATES)
    cooldown_until = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    cooldown_reason = serializers.CharField(
        allow_null=True, help_text="The breaker's last decision: what took the model out, for how long, why."
    )
    last_error = ModelErrorOutput(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_probe_at = serializers.DateTimeField(allow_null=True)
    success_rate = serializers.FloatField(
        allow_null=True,
        help_text="0..1, the share of the model's health changes that were successes; null before the first. "
        "The success rate of its requests is in stats.",
    )
    route_position = serializers.IntegerField(
        allow_null=True, help_text="Its place in the route's chain (0: primary), or null."
    )
    stats = ModelStatsOutput()


class HealthView(AdminView):
    """Every model's health: state, cooldown end, last error, and its live statistics
    (requests, success rate, latency, time to first token, cost per request)."""

    InputSerializer = RouteQuery
    OutputSerializer = ModelHealthOutput

    @extend_schema(
        operation_id="admin_models_health",
        tags=["admin API (staff)"],
        parameters=[RouteQuery],
        responses={200: ModelHealthOutput(many=True), **admin_errors()},
    )
    def get(self, request):
        route = route_get(self.validated(request.query_params)["route"])
        positions = selectors.route_positions(name=route.name)
        board, now, models = selectors.health_board(), time.time(), list(selectors.model_health_rows())
        found = stats_read(stats_key(m.provider.name, m.model_id) for m in models)
        rows = [
            model_health(
                m, board, now, positions.get(m.pk), found.get(stats_key(m.provider.name, m.model_id), NO_REQUESTS)
            )
            for m in models
        ]
        return Response(self.OutputSerializer(rows, many=True).data)


class SetPrimaryInput(serializers.Serializer):
    model_id = serializers.CharField(max_length=255, help_text="model_id, or provider/model_id.")
    route = RouteSlugField(max_length=64, default="pam")
    update_env = serializers.BooleanField(
        default=False, help_text="Echoed back; the change is stored in the database either way."
    )


class SetPrimaryOutput(RouteConfigOutput):
    update_env = serializers.BooleanField()
    note = serializers.CharField()
    warning = serializers.CharField(
        required=False, help_text="Only when an environment override keeps another model primary."
    )


class SetPrimaryView(AdminView):
    """Put the model at position 0 of the route's chain, and answer with the route as chat
    now sees it."""

    InputSerializer = SetPrimaryInput
    OutputSerializer = SetPrimaryOutput

    @extend_schema(
        operation_id="admin_models_set_primary",
        tags=["admin API (staff)"],
        request=SetPrimaryInput,
        responses={
            200: SetPrimaryOutput,
            **admin_errors(
                "Bad input (param names the field): an unknown, ambiguous, "
                "disabled or retired model, a route that is not a slug, "
                "malformed JSON.",
                body=True,
            ),
        },
    )
    def post(self, request):
        data = self.validated(request.data)
        route, model = route_get(data["route"]), model_usable(data["model_id"])
        services.route_set_primary(route=route, model=model, by=audit.actor_of(request, audit.Source.API))
        body = {**route_config(route), "update_env": data["update_env"], "note": UPDATE_ENV_NOTE}
        if body["primary_model"] is None or body["primary_model"]["id"] != model.model_id:
            body["warning"] = (
                f"Stored as primary, but an environment override is in force on route "
                f"'{route.name}' ({body['override']}); it wins until it is removed."
            )
        return Response(self.OutputSerializer(body).data)


def model_usable(name: str) -> AIModel:
    """The model ``name`` (model_id or provider/model_id) if routing may use it, else a 400
    saying why."""
    candidates = selectors.models_by_name(name=name)
    if not candidates:
        raise exceptions.ValidationError({"model_id": f"Unknown model '{name}'; GET available lists them."})
    if len(candidates) > 1:
        raise exceptions.ValidationError(
            {"model_id": f"'{name}' is served by several providers; name it as provider/model_id."}
        )
    reason = unusable_reason(candidates[0])
    if reason:
        raise exceptions.ValidationError({"model_id": f"Model '{name}' {reason}."})
    return candidates[0]


def unusable_reason(model: AIModel) -> str | None:
    if not model.enabled:
        return "is disabled; enable it in admin first"
    if not model.provider.enabled:
        return f"belongs to provider '{model.provider}', which is disabled"
    if model.status == AIModel.Status.RETIRED:
        return "is retired"
    return None


class ReloadInput(serializers.Serializer):
    force = serializers.BooleanField(default=False, help_text="Also end every model's cooldown.")
    route = RouteSlugField(max_length=64, default="pam", help_text="The route whose config is returned.")


class ReloadOutput(serializers.Serializer):
    version = serializers.IntegerField(help_text="The configuration version after the reload.")
    force = serializers.BooleanField()
    cooldowns_cleared = serializers.IntegerField()
    overrides = serializers.DictField(
        child=serializers.CharField(), help_text="Route name -> the environment override in force on it."
    )
    reloaded = serializers.BooleanField()
    config = RouteConfigOutput()


class ReloadView(AdminView):
    """Every worker rebuilds its configuration (re-reading the environment's overrides);
    ``force`` also ends every cooldown."""

    InputSerializer = ReloadInput
    OutputSerializer = ReloadOutput

    @extend_schema(
        operation_id="admin_models_reload",
        tags=["admin API (staff)"],
        request=ReloadInput,
        responses={
            200: ReloadOutput,
            **admin_errors(
                "Bad input (param names the field): a force that is not a boolean, "
                "a route that is not a slug, malformed JSON.",
                body=True,
            ),
        },
    )
    def post(self, request):
        data = self.validated(request.data)
        route = route_get(data["route"])
        result = services.config_reload(force=data["force"], by=audit.actor_of(request, audit.Source.API))
        return Response(self.OutputSerializer({**result, "reloaded": True, "config": route_config(route)}).data)
