"""The registry (providers, models, routes), health, the usage ledger and API keys."""
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Provider(models.Model):
    class Kind(models.TextChoices):
        ANTHROPIC = "anthropic", "Anthropic"
        OPENAI = "openai", "OpenAI"
        GOOGLE = "google", "Google Gemini"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.CharField(
        max_length=500, blank=True,
        help_text="Blank: the SDK's default, or its base-URL environment variable.",
    )
    api_key_env = models.CharField(
        max_length=100, help_text="NAME of the environment variable that holds the key (never the key).",
    )
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.1)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from .providers.urls import base_url_validate

        base_url_validate(url=self.base_url)


class AIModel(models.Model):
    class MaxTokensParam(models.TextChoices):
        MAX_TOKENS = "max_tokens", "max_tokens"
        MAX_COMPLETION_TOKENS = "max_completion_tokens", "max_completion_tokens"
        MAX_OUTPUT_TOKENS = "maxOutputTokens", "maxOutputTokens"

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        DEPRECATED = "deprecated", "Deprecated"
        RETIRED = "retired", "Retired"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The provider API's identifier.")
    display_name = models.CharField(max_length=200, blank=True)
    context_window = models.PositiveIntegerField(default=128_000)
    max_output_tokens = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(1)])
    input_price_per_mtok = models.DecimalField(
        "input $ / 1M tokens", max_digits=12, decimal_places=6, default=Decimal("0"))
    output_price_per_mtok = models.DecimalField(
        "output $ / 1M tokens", max_digits=12, decimal_places=6, default=Decimal("0"))
    supports_tools = models.BooleanField(default=True)
    supports_streaming = models.BooleanField(default=True)
    supports_temperature = models.BooleanField(default=True)
    max_tokens_param = models.CharField(
        max_length=32, choices=MaxTokensParam.choices, default=MaxTokensParam.MAX_TOKENS)
    env_suffix = models.CharField(
        max_length=64, blank=True,
        help_text="Suffix of <ROUTE>_USE_<SUFFIX> toggles, e.g. GPT5_MINI.")
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        ordering = ["provider__name", "model_id"]
        unique_together = [("provider", "model_id")]
        verbose_name = "AI model"

    def __str__(self):
        return self.model_id


class Route(models.Model):
    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority (fallback chain)"

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.PRIORITY)
    latency_budget_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Total deadline for the whole failover chain.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class RouteEntry(models.Model):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="entries")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="route_entries")
    position = models.PositiveIntegerField(default=0, help_text="Fallback order; 0 is the primary.")
    weight = models.PositiveSmallIntegerField(default=100, help_text="Canary share (later).")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["route", "position", "id"]
        unique_together = [("route", "model")]
        verbose_name_plural = "route entries"

    def __str__(self):
        return f"{self.route.name}[{self.position}] {self.model.model_id}"


class ModelHealth(models.Model):
    class State(models.TextChoices):
        HEALTHY = "healthy", "Healthy"
        COOLING_DOWN = "cooling_down", "Cooling down"
        HALF_OPEN = "half_open", "Half open"

    model = models.OneToOneField(AIModel, on_delete=models.CASCADE, related_name="health")
    state = models.CharField(max_length=16, choices=State.choices, default=State.HEALTHY)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error_kind = models.CharField(max_length=32, blank=True)
    last_error_message = models.TextField(blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    latency_ms_avg = models.FloatField(null=True, blank=True)
    success_count = models.PositiveBigIntegerField(default=0)
    failure_count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "model health"

    def __str__(self):
        return f"{self.model.model_id}: {self.state}"

    @property
    def success_rate(self):
        total = self.success_count + self.failure_count
        return None if total == 0 else self.success_count / total


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        help_text="A staff user's key may call the admin API.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


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
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model", "created_at"])]

    def __str__(self):
        return f"{self.request_id} #{self.attempt} {self.model} {self.outcome}"
