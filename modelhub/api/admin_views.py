"""The admin API (``/api/v1/admin/models/``), shaped as the PAM hot-swap document gives it.

Staff only: an admin session of a staff user, or ``Authorization: Bearer <key>`` of a key
whose user is staff. What it reports is what chat does: the route's chain and health come
from this worker's routing snapshot (reloaded first if the configuration moved), with the
environment's overrides applied."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from .. import audit, selectors, services
from ..models import AIModel, Route

UPDATE_ENV_NOTE = ("The change is stored in the database: it survives restarts and reaches every "
                   "worker, whatever update_env says (environment variables are never edited).")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}


class IsStaff(BasePermission):
    message = "Staff only: sign in to admin as a staff user, or use a staff user's API key."

    def has_permission(self, request, view):
        user = request.user
        return bool(user is not None and user.is_active and user.is_staff)


def admin_exception_handler(exc, context):
    """DRF's handling (status, WWW-Authenticate) with the hub's error body."""
    response = exception_handler(exc, context)
    if response is not None:
        error = {"type": ERROR_TYPES.get(response.status_code, "error")}
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, dict):
            param, messages = next(iter(detail.items()))
            error["param"], detail = param, messages
        error["message"] = str(detail[0] if isinstance(detail, list) else detail)
        response.data = {"error": error}
    return response


class AdminView(APIView):
    permission_classes = [IsStaff]

    def get_exception_handler(self):
        return admin_exception_handler


class RouteInput(serializers.Serializer):
    route = serializers.SlugField(max_length=64, default="pam")


def route_get(name: str) -> Route:
    route = selectors.route_get_by_name(name=name)
    if route is None:
        raise exceptions.NotFound(f"Unknown route '{name}'.")
    return route


def route_input(data) -> Route:
    serializer = RouteInput(data=data)
    serializer.is_valid(raise_exception=True)
    return route_get(serializer.validated_data["route"])


# --- reads -------------------------------------------------------------------------

def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch else None


def model_config(spec) -> dict:
    return {"display_name": spec.display_name, "provider": spec.provider.name,
            "provider_kind": spec.provider.kind, "cost_per_1m_input": float(spec.input_price_per_mtok),
            "cost_per_1m_output": float(spec.output_price_per_mtok), "context_window": spec.context_window,
            "max_output_tokens": spec.max_output_tokens, "max_tokens_param": spec.max_tokens_param,
            "supports_temperature": spec.supports_temperature, "supports_streaming": spec.supports_streaming,
            "env_suffix": spec.env_suffix, "key_set": bool(spec.provider.api_key)}


def chain_item(spec, board, now: float) -> dict:
    health = board.get(spec.pk)
    return {"id": spec.model_id, "config": model_config(spec), "healthy": health.available(now),
            "state": health.effective_state(now), "cooldown_until": _iso(health.cooldown_until)}


def route_config(route: Route) -> dict:
    """The route as chat sees it now: primary, fallbacks, health, overrides in force."""
    snapshot, board = selectors.routing_snapshot(), selectors.health_board()
    spec, now = snapshot.routes.get(route.name), time.time()
    items = [chain_item(m, board, now) for m in (spec.chain if spec else ())]
    override = spec.override if spec else None
    return {"route": route.name, "enabled": route.enabled,
            "primary_model": items[0] if items else None, "fallback_models": items[1:],
            "total_models": len(items), "healthy_models": sum(i["healthy"] for i in items),
            "override": override, "overrides": override.split("; ") if override else [],
            "stored_chain": selectors.route_chain_stored(route=route), "version": snapshot.version}


def model_available(model: AIModel, position: int | None) -> dict:
    return {"model_id": model.model_id, "name": model.display_name or model.model_id,
            "provider": model.provider.name, "cost_per_1m_input": float(model.input_price_per_mtok),
            "cost_per_1m_output": float(model.output_price_per_mtok), "description": model.description,
            "context_window": model.context_window, "max_output_tokens": model.max_output_tokens,
            "supports_tools": model.supports_tools, "supports_streaming": model.supports_streaming,
            "status": model.status, "env_suffix": model.env_suffix, "route_position": position}


def model_health(model: AIModel, board, now: float, position: int | None) -> dict:
    health, row = board.get(model.pk), getattr(model, "health", None)
    error = {"kind": health.last_error_kind, "message": health.last_error_message} if health.last_error_kind else None
    stats = audit.state_of(row) or {}
    return {"model_id": model.model_id, "model_name": model.display_name or model.model_id,
            "provider": model.provider.name, "enabled": model.enabled, "is_healthy": health.available(now),
            "state": health.effective_state(now), "cooldown_until": _iso(health.cooldown_until),
            "consecutive_failures": health.consecutive_failures, "last_error": error,
            "last_success_at": stats.get("last_success_at"), "last_probe_at": stats.get("last_probe_at"),
            "success_rate": row.success_rate if row else None,
            "latency_ms_avg": row.latency_ms_avg if row else None, "route_position": position}


# --- views -------------------------------------------------------------------------

class ConfigView(AdminView):
    def get(self, request):
        return Response(route_config(route_input(request.query_params)))


class AvailableView(AdminView):
    def get(self, request):
        positions = selectors.route_positions(name=route_input(request.query_params).name)
        return Response([model_available(m, positions.get(m.pk)) for m in selectors.models_available()])


class HealthView(AdminView):
    def get(self, request):
        positions = selectors.route_positions(name=route_input(request.query_params).name)
        board, now, models = selectors.health_board(), time.time(), selectors.model_health_rows()
        return Response([model_health(m, board, now, positions.get(m.pk)) for m in models])


class SetPrimaryView(AdminView):
    class InputSerializer(serializers.Serializer):
        model_id = serializers.CharField(max_length=255)
        route = serializers.SlugField(max_length=64, default="pam")
        update_env = serializers.BooleanField(default=False)

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        route, model = route_get(data["route"]), model_usable(data["model_id"])
        services.route_set_primary(route=route, model=model, by=audit.actor_of(request, audit.Source.API))
        body = {**route_config(route), "update_env": data["update_env"], "note": UPDATE_ENV_NOTE}
        if body["primary_model"] is None or body["primary_model"]["id"] != model.model_id:
            body["warning"] = (f"Stored as primary, but an environment override is in force on route "
                               f"'{route.name}' ({body['override']}); it wins until it is removed.")
        return Response(body)


def model_usable(name: str) -> AIModel:
    """The model ``name`` (model_id or provider/model_id) if routing may use it, else a 400
    saying why."""
    candidates = selectors.models_by_name(name=name)
    if not candidates:
        raise exceptions.ValidationError({"model_id": f"Unknown model '{name}'; GET available lists them."})
    if len(candidates) > 1:
        raise exceptions.ValidationError({"model_id": f"'{name}' is served by several providers; "
                                                      "name it as provider/model_id."})
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


class ReloadView(AdminView):
    class InputSerializer(serializers.Serializer):
        force = serializers.BooleanField(default=False)
        route = serializers.SlugField(max_length=64, default="pam")

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        route = route_get(serializer.validated_data["route"])
        result = services.config_reload(force=serializer.validated_data["force"],
                                        by=audit.actor_of(request, audit.Source.API))
        return Response({**result, "reloaded": True, "config": route_config(route)})
