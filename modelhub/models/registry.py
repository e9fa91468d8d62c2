"""The registry operators edit: providers, models, routes and their chains."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
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
        max_length=500,
        blank=True,
        help_text="Blank: the SDK's default, or its base-URL environment variable.",
    )
    api_key_env = models.CharField(
        max_length=100,
        help_text="NAME of the environment variable that holds the key (never the key).",
    )
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.1)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from ..providers.urls import base_url_validate

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
        "input $ / 1M tokens", max_digits=12, decimal_places=6, default=Decimal("0")
    )
    output_price_per_mtok = models.DecimalField(
        "output $ / 1M tokens", max_digits=12, decimal_places=6, default=Decimal("0")
    )
    supports_tools = models.BooleanField(default=True, help_text="Takes tools (function calling).")
    supports_vision = models.BooleanField(default=False, help_text="Takes images in user messages.")
    supports_json_schema = models.BooleanField(
        default=False, help_text='Answers to a JSON schema (response_format "json_schema").'
    )
    params_unsupported = models.JSONField(
        default=list,
        blank=True,
        help_text='Optional parameters this model refuses, never sent to it, e.g. ["top_p", "stop"]. '
        "Known: stop, top_p, seed, presence_penalty, frequency_penalty, user, metadata.",
    )
    supports_streaming = models.BooleanField(default=True)
    supports_temperature = models.BooleanField(default=True)
    max_tokens_param = models.CharField(
        max_length=32, choices=MaxTokensParam.choices, default=MaxTokensParam.MAX_TOKENS
    )
    env_suffix = models.CharField(
        max_length=64, blank=True, help_text="Suffix of <ROUTE>_USE_<SUFFIX> toggles, e.g. GPT5_MINI."
    )
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    discovered_at = models.DateTimeField(
        null=True, blank=True, help_text="When discovery found it in the provider's listing."
    )
    deprecated_on = models.DateField(null=True, blank=True, help_text="When the provider deprecated it.")
    retires_on = models.DateField(
        null=True,
        blank=True,
        help_text="When the provider stops serving it: from then on routing puts its successor in its place.",
    )
    successor = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="predecessors",
        help_text="The model that takes its place once it is retired (or an id the provider never listed).",
    )
    lifecycle_note = models.CharField(
        max_length=300, blank=True, help_text="Where the dates come from, or why the model is flagged."
    )
    missing_since = models.DateTimeField(
        null=True, blank=True, help_text="Since when the provider's listing no longer has it."
    )

    class Meta:
        ordering = ["provider__name", "model_id"]
        unique_together = [("provider", "model_id")]
        verbose_name = "AI model"

    def __str__(self):
        return self.model_id

    def clean(self):
        from ..providers.base import OPTIONAL_PARAMS

        names = self.params_unsupported
        if not isinstance(names, list) or not all(isinstance(n, str) and n in OPTIONAL_PARAMS for n in names):
            raise ValidationError(
                {"params_unsupported": f"A list of parameter names from: {', '.join(OPTIONAL_PARAMS)}."}
            )


class Route(models.Model):
    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority (fallback chain)"
        COMPLEXITY = "complexity", "Complexity (simple → simple route, complex → complex route)"
        COST = "cost", "Cheapest capable healthy model first"
        LATENCY = "latency", "Fastest healthy model first (recent p50)"

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.PRIORITY)
    latency_budget_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Total deadline for the whole failover chain."
    )
    ttft_timeout_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per-attempt time to first token; blank = the default."
    )
    simple_route = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="simple_for",
        help_text="Complexity strategy: the route simple requests take.",
    )
    complex_route = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="complex_for",
        help_text="Complexity strategy: the route complex requests take.",
    )
    strong_share_target = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Complexity strategy: the share of requests calibration aims to send to the complex route.",
    )
    complexity_threshold = models.FloatField(
        null=True, blank=True, help_text="Complexity strategy: a score at or above it is complex (blank: the default)."
    )
    classifier_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Complexity strategy: keyword lists and weights replacing the classifier's defaults.",
    )
    class_budgets_ms = models.JSONField(
        default=dict,
        blank=True,
        help_text='Latency budget per request category, e.g. {"simple": 5000, "technical": 7000, '
        '"research": 10000}: models whose recent p95 passes it are tried last.',
    )
    fallback_route = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fallback_for",
        help_text="When this route's chain is exhausted, go on with that route's models not yet "
        "tried, within the same deadline (its own fallback route is not followed).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.fallback_route_id is not None and self.fallback_route_id == self.pk:
            raise ValidationError({"fallback_route": "A route cannot be its own fallback."})


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
