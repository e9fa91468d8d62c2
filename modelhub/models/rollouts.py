from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from .registry import AIModel, Route

DEFAULT_STEP_WEIGHTS = [1, 5, 10, 25, 50, 100]


def default_step_weights() -> list[int]:
    return list(DEFAULT_STEP_WEIGHTS)


class Rollout(models.Model):
    """A candidate model brought onto a route safely (the SarvanOM upgrade path): shadow
    traffic first, then a growing canary share, then promotion to the route's primary; or
    rolled back at once when it regresses against the route's stable primary."""

    class Phase(models.TextChoices):
        SHADOW = "shadow", "Shadow (copies of requests, answers discarded)"
        CANARY = "canary", "Canary (a share of real traffic)"
        PROMOTED = "promoted", "Promoted (now the route's primary)"
        ROLLED_BACK = "rolled_back", "Rolled back"
        PAUSED = "paused", "Paused"

    ACTIVE_PHASES = (Phase.SHADOW, Phase.CANARY, Phase.PAUSED)

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="rollouts")
    candidate = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="rollouts")
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.SHADOW)
    step_weights = models.JSONField(
        default=default_step_weights,
        help_text="Canary share per step, in percent, rising to 100 (default 1, 5, 10, 25, 50, 100).",
    )
    step = models.PositiveSmallIntegerField(default=0, help_text="Index into step_weights (canary phase).")
    weight = models.FloatField(
        default=0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="The canary share now, in percent (0 outside the canary phase).",
    )
    min_requests = models.PositiveIntegerField(
        default=50, help_text="Canary requests a step needs before it is judged (fewer: the step holds)."
    )
    max_error_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Roll back when the candidate's error rate passes this.",
    )
    max_latency_ratio = models.FloatField(
        default=1.5,
        validators=[MinValueValidator(0.0)],
        help_text="Roll back when the candidate's p95 latency passes the stable model's times this.",
    )
    max_cost_ratio = models.FloatField(
        default=1.5,
        validators=[MinValueValidator(0.0)],
        help_text="Roll back when the candidate's cost per request passes the stable model's times this.",
    )
    shadow_percent = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Share of the route's requests copied to the candidate in the shadow phase, in percent.",
    )
    shadow_budget_usd = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Shadow traffic stops once it has cost this much.",
    )
    shadow_spent_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal(0), editable=False)
    shadow_requests = models.PositiveIntegerField(default=0, editable=False)
    step_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    reason = models.TextField(blank=True, help_text="The last decision and why (hold, step, rollback, promotion).")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["route"],
                condition=models.Q(phase__in=["shadow", "canary", "paused"]),
                name="rollout_one_active_per_route",
            )
        ]

    def __str__(self):
        return f"{self.candidate} on {self.route} ({self.phase})"

    def clean(self):
        weights = self.step_weights
        if (
            not isinstance(weights, list)
            or not weights
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w <= 100 for w in weights)
            or any(b <= a for a, b in zip(weights, weights[1:], strict=False))
        ):
            raise ValidationError({"step_weights": "A rising list of percentages between 0 and 100, e.g. [1, 5, 100]."})
