"""Cost rollups and alerts (Celery): the ledger summed per day, and the rules watching it."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from .usage import ApiKey

__all__ = ["Alert", "AlertRule", "DailyCost", "RollupDay"]


class DailyCost(models.Model):
    """The ledger summed per UTC day, route, model, provider and API key. Recomputed from
    the ledger on each rollup, so the figures always equal the ledger's sums.

    ``requests`` counts each request once, on the model of its last attempt (the one that
    answered, or the last to fail); ``attempts`` counts every call to the model."""

    day = models.DateField(db_index=True)
    route = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    is_probe = models.BooleanField(default=False, help_text="Health probes, not client traffic.")
    requests = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="Attempts that failed.")
    fallbacks = models.PositiveIntegerField(default=0, help_text="Requests answered by a fallback.")
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))

    class Meta:
        ordering = ["-day", "route", "model"]
        verbose_name = "daily cost"

    def __str__(self):
        return f"{self.day} {self.route or '-'} {self.model}"


class RollupDay(models.Model):
    """Bookkeeping of the rollup: which days are summed, and whether their ledger rows were
    deleted (a pruned day is never recomputed: its ledger is gone)."""

    day = models.DateField(unique=True)
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    ledger_rows = models.PositiveBigIntegerField(default=0)
    pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return str(self.day)


class AlertRule(models.Model):
    class Metric(models.TextChoices):
        DAILY_COST = "daily_cost", "Daily cost (USD)"
        AVG_COST = "avg_cost_per_request", "Average cost per request (USD)"
        REQUEST_SHARE = "request_share", "Share of requests (0-1)"
        MODEL_LIFECYCLE = "model_lifecycle", "Model lifecycle (days to retirement)"
        STRONG_SHARE = "strong_share", "Complexity routes: share sent to the complex route (0-1)"
        ROLLOUT = "rollout", "Rollout rolled back (the figure that failed its check)"

    class Scope(models.TextChoices):
        ALL = "all", "All traffic"
        ROUTE = "route", "One route"
        MODEL = "model", "One model"

    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    threshold = models.DecimalField(
        max_digits=24, decimal_places=12, help_text="Fires when the day's value is above this."
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    target = models.CharField(max_length=200, blank=True, help_text="The route or model id the scope names.")
    min_requests = models.PositiveIntegerField(
        default=0, help_text="Ignore averages and shares over fewer requests than this."
    )
    emails = models.CharField(max_length=500, blank=True, help_text="Comma-separated; blank = MODELHUB_ALERT_EMAILS.")
    webhook_url = models.CharField(max_length=500, blank=True, help_text="Receives a JSON POST.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from ..providers.urls import base_url_validate

        if self.scope != self.Scope.ALL and not self.target:
            raise ValidationError({"target": "Name the route or model this rule watches."})
        if self.metric == self.Metric.REQUEST_SHARE and self.scope == self.Scope.ALL:
            raise ValidationError({"scope": "A share of requests needs a route or a model."})
        try:
            base_url_validate(url=self.webhook_url)
        except ValidationError as exc:
            raise ValidationError({"webhook_url": exc.messages}) from None


class Alert(models.Model):
    """A rule that fired, once per rule per day."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    period = models.DateField(help_text="The UTC day the figure covers.")
    created_at = models.DateTimeField(auto_now_add=True)
    value = models.DecimalField(max_digits=24, decimal_places=12)
    threshold = models.DecimalField(max_digits=24, decimal_places=12)
    message = models.TextField()
    emailed = models.BooleanField(default=False)
    webhook_status = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["rule", "period"], name="one_alert_per_rule_per_period")]

    def __str__(self):
        return f"{self.period} {self.rule.name}"
