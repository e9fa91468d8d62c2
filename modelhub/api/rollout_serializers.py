"""What the rollouts admin API takes and gives (``/api/v1/admin/rollouts/``). Bodies are
JSON with strict types: ``"10"`` is not an integer and ``"true"`` is not a boolean."""

from __future__ import annotations

from rest_framework import serializers

from ..models import Rollout
from ..models.rollouts import DEFAULT_STEP_WEIGHTS
from .admin_serializers import ModelStatsOutput, RouteSlugField
from .fields import StrictCharField, StrictFloatField, StrictIntegerField

MAX_STEPS = 20
MAX_BUDGET_USD = 1_000_000
Phase = Rollout.Phase


class StrictRouteField(RouteSlugField):
    default_error_messages = {"invalid": "Must be a route name: letters, digits, hyphens and underscores."}

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _percent(help_text: str, **kwargs) -> StrictFloatField:
    return StrictFloatField(min_value=0, max_value=100, help_text=help_text, **kwargs)


class RolloutSettingsInput(serializers.Serializer):
    """The settings an operator may set at the start and change while the rollout runs."""

    step_weights = serializers.ListField(
        child=_percent("A canary share, in percent."),
        min_length=1,
        max_length=MAX_STEPS,
        required=False,
        help_text=f"Rising canary shares in percent, one per step (default {DEFAULT_STEP_WEIGHTS}).",
    )
    min_requests = StrictIntegerField(
        min_value=1, max_value=1_000_000, required=False, help_text="Requests a step needs before it is judged."
    )
    max_error_rate = StrictFloatField(
        min_value=0, max_value=1, required=False, help_text="0..1: roll back above this error rate."
    )
    max_latency_ratio = StrictFloatField(
        min_value=0, max_value=1000, required=False, help_text="Roll back above the stable model's p95 times this."
    )
    max_cost_ratio = StrictFloatField(
        min_value=0,
        max_value=1000,
        required=False,
        help_text="Roll back above the stable model's cost per request times this.",
    )
    shadow_percent = _percent("Share of requests copied to the candidate in the shadow phase.", required=False)
    shadow_budget_usd = StrictFloatField(
        min_value=0, max_value=MAX_BUDGET_USD, required=False, help_text="Shadow copies stop once they cost this."
    )


class RolloutCreateInput(RolloutSettingsInput):
    route = StrictRouteField(max_length=64, help_text="The route the candidate is rolled out on.")
    candidate = StrictCharField(max_length=255, help_text="The candidate: model_id, or provider/model_id.")
    phase = serializers.ChoiceField(
        choices=[Phase.SHADOW, Phase.CANARY],
        default=Phase.SHADOW,
        help_text='"shadow" (default: copies first) or "canary" (straight to the first step).',
    )


class RolloutActionInput(serializers.Serializer):
    reason = StrictCharField(
        max_length=500, required=False, allow_blank=True, help_text="Why, for the audit trail and the rollout's row."
    )


class RolloutListQuery(serializers.Serializer):
    route = RouteSlugField(max_length=64, required=False, help_text="Only this route's rollouts.")
    phase = serializers.ChoiceField(choices=Phase.choices, required=False, help_text="Only rollouts in this phase.")
    active = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true: shadow, canary or paused; false: ended."
    )


class CandidateOutput(serializers.Serializer):
    model_id = serializers.CharField()
    provider = serializers.CharField()


class RolloutOutput(serializers.Serializer):
    id = serializers.IntegerField()
    route = serializers.CharField()
    candidate = CandidateOutput()
    phase = serializers.ChoiceField(choices=Phase.choices)
    step = serializers.IntegerField(help_text="The canary step (index into step_weights).")
    step_weights = serializers.ListField(child=serializers.FloatField())
    weight = serializers.FloatField(help_text="The canary share now, in percent (0 outside the canary phase).")
    min_requests = serializers.IntegerField()
    max_error_rate = serializers.FloatField()
    max_latency_ratio = serializers.FloatField()
    max_cost_ratio = serializers.FloatField()
    shadow_percent = serializers.FloatField()
    shadow_budget_usd = serializers.FloatField()
    shadow_spent_usd = serializers.FloatField()
    shadow_requests = serializers.IntegerField()
    step_started_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField(allow_blank=True, help_text="The last decision and why.")
    created_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class AnalysisOutput(serializers.Serializer):
    """The verdict on the phase or step as it stands (what the analysis would decide now)."""

    action = serializers.ChoiceField(choices=["hold", "advance", "rollback"])
    reason = serializers.CharField()
    requests = serializers.IntegerField(help_text="The phase's or step's requests so far.")
    failures = serializers.IntegerField(help_text="Those the candidate failed, or sat out cooling down.")
    stable_model = serializers.CharField(allow_null=True, help_text="provider/model_id it is judged against.")
    candidate_stats = ModelStatsOutput()
    stable_stats = ModelStatsOutput(allow_null=True)


class RolloutDetailOutput(RolloutOutput):
    analysis = AnalysisOutput(
        allow_null=True, help_text="null unless the rollout runs (shadow or canary) in this worker's configuration."
    )
