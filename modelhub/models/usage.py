"""API keys and the usage ledger."""

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models

from .registry import Route


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="A staff user's key may call the admin API.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    routes = models.ManyToManyField(Route, blank=True, help_text="Routes it may use; none = all.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute.")
    daily_budget_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from then on; empty: never.")
    # The secret a rotation replaced keeps working for a grace period, so that clients can
    # switch over without an outage; only one previous secret is kept.
    previous_key_hash = models.CharField(max_length=64, null=True, unique=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, editable=False)

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def valid_until(self, digest: str) -> datetime | None:
        """When the secret with this hash stops being accepted (None: never): the key's
        expiry and, for the secret the latest rotation replaced, also the end of its grace."""
        if digest != self.previous_key_hash:
            return self.expires_at
        ends = [end for end in (self.expires_at, self.previous_valid_until) if end is not None]
        return min(ends, default=None)


class UsageRecord(models.Model):
    """One row per attempt on a provider. Names are copied, not linked, so that editing or
    deleting the registry never rewrites history."""

    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=32, db_index=True)
    route = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, help_text="ok, or the error kind.")
    attempt = models.PositiveSmallIntegerField(default=1)
    is_fallback = models.BooleanField(default=False)
    is_probe = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    # How the request was routed (blank where it does not apply).
    strategy = models.CharField(max_length=16, blank=True)
    tier = models.CharField(max_length=16, blank=True, help_text="simple | complex (complexity routes).")
    category = models.CharField(max_length=16, blank=True, help_text="simple | technical | research | multimedia.")
    score = models.FloatField(null=True, blank=True, help_text="The classifier's complexity score.")
    arm = models.CharField(max_length=16, blank=True, help_text="stable | canary | shadow.")
    counterfactual_cost_usd = models.DecimalField(
        max_digits=24,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="Complexity routes: what the complex route's primary would have cost for the same tokens.",
    )
    routing = models.JSONField(
        null=True,
        blank=True,
        help_text="The routing explanation, compact: override, strategy, tier, arm, the models skipped and why.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model", "created_at"])]
        # An attempt is identified by its request and number: a replayed spool row is stored once.
        constraints = [models.UniqueConstraint(fields=["request_id", "attempt"], name="usage_attempt_unique")]

    def __str__(self):
        return f"{self.request_id} #{self.attempt} {self.model} {self.outcome}"
