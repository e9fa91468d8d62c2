"""The rollouts admin API (``/api/v1/admin/rollouts/``): start a candidate's rollout on a
route, list and read rollouts (with what the analysis would decide now), change their
settings, and pause, resume, advance, roll back or promote them. Staff only, like the rest
of the admin API; every change is audited and obeyed by every worker on its next request."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response

from .. import audit, rollouts, selectors
from ..models import Rollout
from ..routing.strategies import model_key
from ..stats import window_seconds
from .admin_serializers import STAFF_ONLY
from .admin_views import AdminView, route_get
from .rollout_serializers import (
    RolloutActionInput,
    RolloutCreateInput,
    RolloutDetailOutput,
    RolloutListQuery,
    RolloutOutput,
    RolloutSettingsInput,
)
from .serializers import NativeErrorSerializer

TAGS = ["admin API (staff)"]


class Conflict(exceptions.APIException):
    status_code, default_code = status.HTTP_409_CONFLICT, "conflict"


def _errors(bad_input: str, *, conflict: str | None = None, body: bool = True) -> dict:
    statuses = {400: bad_input, **STAFF_ONLY, 404: "Unknown rollout, or (to start one) unknown route."}
    if conflict:
        statuses[409] = conflict
    if body:
        statuses[415] = "A body that is not JSON."
    return {code: OpenApiResponse(NativeErrorSerializer, description=text) for code, text in statuses.items()}


# --- what the views answer -----------------------------------------------------------


def rollout_out(rollout: Rollout) -> dict:
    return {
        "id": rollout.pk,
        "route": rollout.route.name,
        "candidate": {"model_id": rollout.candidate.model_id, "provider": rollout.candidate.provider.name},
        **{name: getattr(rollout, name) for name in (*rollouts.EDITABLE, "phase", "step", "weight", "reason")},
        "shadow_spent_usd": rollout.shadow_spent_usd,
        "shadow_requests": rollout.shadow_requests,
        "step_started_at": rollout.step_started_at,
        "created_by": rollout.created_by,
        "created_at": rollout.created_at,
        "updated_at": rollout.updated_at,
        "ended_at": rollout.ended_at,
    }


def analysis_out(rollout: Rollout) -> dict | None:
    spec = rollouts.rollout_spec_live(rollout)
    if spec is None:
        return None
    status = rollouts.rollout_status(spec)
    window = {"window_seconds": window_seconds()}
    return {
        "action": status.verdict.action,
        "reason": status.verdict.reason,
        "requests": status.counts.requests,
        "failures": status.counts.failures,
        "stable_model": model_key(spec.stable) if spec.stable is not None else None,
        "candidate_stats": {**window, **asdict(status.candidate)},
        "stable_stats": None if status.stable is None else {**window, **asdict(status.stable)},
    }


# --- how the views fail ----------------------------------------------------------------


def rollout_get(rollout_id: int) -> Rollout:
    rollout = Rollout.objects.select_related("route", "candidate__provider").filter(pk=rollout_id).first()
    if rollout is None:
        raise exceptions.NotFound(f"Unknown rollout {rollout_id}.")
    return rollout


def candidate_get(name: str):
    found = selectors.models_by_name(name=name)
    if not found:
        raise exceptions.ValidationError({"candidate": f"Unknown model '{name}'."})
    if len(found) > 1:
        raise exceptions.ValidationError(
            {"candidate": f"'{name}' is served by several providers; name it as provider/model_id."}
        )
    return found[0]


def changed(act):
    """Run a rollout service: a refused change is a 400 (bad settings) or a 409 (the phase
    does not allow it)."""
    try:
        return act()
    except rollouts.RolloutConflict as exc:
        raise Conflict(str(exc)) from None
    except ValidationError as exc:
        raise exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _settings(data: dict) -> dict:
    if "shadow_budget_usd" in data:  # a JSON number: its shortest decimal spelling, not its binary one
        data = {**data, "shadow_budget_usd": Decimal(str(data["shadow_budget_usd"]))}
    return data


# --- views ---------------------------------------------------------------------------


class JsonAdminView(AdminView):
    parser_classes = [parsers.JSONParser]


class RolloutsView(JsonAdminView):
    """Rollouts, newest first; and a new one started."""

    @extend_schema(
        operation_id="admin_rollouts_list",
        tags=TAGS,
        parameters=[RolloutListQuery],
        responses={200: RolloutOutput(many=True), **_errors("A filter that is not valid.", body=False)},
    )
    def get(self, request):
        filters = validated(RolloutListQuery, request.query_params)
        found = Rollout.objects.select_related("route", "candidate__provider")
        if "route" in filters:
            found = found.filter(route__name=filters["route"])
        if "phase" in filters:
            found = found.filter(phase=filters["phase"])
        if filters["active"] is not None:
            active = {"phase__in": Rollout.ACTIVE_PHASES}
            found = found.filter(**active) if filters["active"] else found.exclude(**active)
        return Response(RolloutOutput([rollout_out(r) for r in found], many=True).data)

    @extend_schema(
        operation_id="admin_rollouts_create",
        tags=TAGS,
        request=RolloutCreateInput,
        responses={
            201: RolloutOutput,
            **_errors(
                "Bad input (param names the field): an unknown or ambiguous route or candidate, a retired "
                "candidate or one already the route's primary, step weights that do not rise, malformed JSON.",
                conflict="The route has an active rollout already.",
            ),
        },
    )
    def post(self, request):
        data = validated(RolloutCreateInput, request.data)
        route, candidate = route_get(data.pop("route")), candidate_get(data.pop("candidate"))
        rollout = Rollout(route=route, candidate=candidate, **_settings(data))
        by = audit.actor_of(request, audit.Source.API)
        started = changed(lambda: rollouts.rollout_start(rollout=rollout, by=by))
        return Response(RolloutOutput(rollout_out(started)).data, status=status.HTTP_201_CREATED)


class RolloutView(JsonAdminView):
    """One rollout, with what the analysis would decide now; and its settings changed."""

    @extend_schema(
        operation_id="admin_rollouts_read",
        tags=TAGS,
        responses={200: RolloutDetailOutput, **_errors("-", body=False)},
    )
    def get(self, request, rollout_id: int):
        rollout = rollout_get(rollout_id)
        return Response(RolloutDetailOutput({**rollout_out(rollout), "analysis": analysis_out(rollout)}).data)

    @extend_schema(
        operation_id="admin_rollouts_change",
        tags=TAGS,
        request=RolloutSettingsInput,
        responses={
            200: RolloutOutput,
            **_errors(
                "Bad input (param names the field): a value out of range, step weights that do not rise.",
                conflict="The rollout has ended (promoted or rolled back).",
            ),
        },
    )
    def patch(self, request, rollout_id: int):
        rollout, data = rollout_get(rollout_id), validated(RolloutSettingsInput, request.data)
        by = audit.actor_of(request, audit.Source.API)
        updated = changed(lambda: rollouts.rollout_update(rollout=rollout, changes=_settings(data), by=by))
        return Response(RolloutOutput(rollout_out(updated)).data)


class RolloutActionView(JsonAdminView):
    """A change of phase; the body's optional ``reason`` goes into the audit trail."""

    def post(self, request, rollout_id: int):
        rollout, reason = rollout_get(rollout_id), validated(RolloutActionInput, request.data).get("reason", "")
        by = audit.actor_of(request, audit.Source.API)
        done = changed(lambda: self.act(rollout, by, reason))
        return Response(RolloutOutput(rollout_out(done)).data)

    def act(self, rollout: Rollout, by: audit.Actor, reason: str) -> Rollout:
        raise NotImplementedError


def _action_schema(name: str, summary: str, conflict: str):
    return extend_schema_view(
        post=extend_schema(
            operation_id=f"admin_rollouts_{name}",
            tags=TAGS,
            summary=summary,
            request=RolloutActionInput,
            responses={200: RolloutOutput, **_errors("A reason that is not a string.", conflict=conflict)},
        )
    )


@_action_schema("pause", "No canary traffic and no shadow copies until resumed.", "It is not in shadow or canary.")
class RolloutPauseView(RolloutActionView):
    def act(self, rollout, by, reason):
        return rollouts.rollout_pause(rollout=rollout, by=by, reason=reason)


@_action_schema("resume", "Back to the phase and step it was paused in.", "It is not paused.")
class RolloutResumeView(RolloutActionView):
    def act(self, rollout, by, reason):
        return rollouts.rollout_resume(rollout=rollout, by=by)


@_action_schema(
    "advance", "The next step now (shadow to canary; promotion after the last step).", "It is not in shadow or canary."
)
class RolloutAdvanceView(RolloutActionView):
    def act(self, rollout, by, reason):
        return rollouts.rollout_advance(rollout=rollout, by=by, reason=reason)


@_action_schema("rollback", "End it now: no more traffic to the candidate.", "It has ended.")
class RolloutRollbackView(RolloutActionView):
    def act(self, rollout, by, reason):
        return rollouts.rollout_rollback(rollout=rollout, by=by, reason=reason)


@_action_schema("promote", "Make the candidate the route's primary now (set-primary, audited).", "It has ended.")
class RolloutPromoteView(RolloutActionView):
    def act(self, rollout, by, reason):
        return rollouts.rollout_promote(rollout=rollout, by=by, reason=reason)
