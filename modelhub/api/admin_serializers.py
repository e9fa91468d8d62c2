"""Serializers the staff endpoints share (the admin API and metrics): the route as chat
sees it, which config, set-primary and reload all answer with, and the error responses
of the OpenAPI schema. The fields are listed in the order the answer gives them."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from ..models import AIModel, ModelHealth
from .serializers import NativeErrorSerializer

STATES = ModelHealth.State.values


class RouteSlugField(serializers.SlugField):
    """A route name. A blank one is refused wherever it comes from: DRF would take a blank
    form field or query parameter as omitted and answer for the default route."""

    def get_value(self, dictionary):
        if dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)


class RouteQuery(serializers.Serializer):
    route = RouteSlugField(max_length=64, default="pam", help_text='The route (default "pam").')


class ModelConfigOutput(serializers.Serializer):
    display_name = serializers.CharField(allow_blank=True)
    provider = serializers.CharField()
    provider_kind = serializers.CharField(help_text="The provider's API: anthropic, openai, google, ...")
    cost_per_1m_input = serializers.FloatField(help_text="USD per million input tokens.")
    cost_per_1m_output = serializers.FloatField(help_text="USD per million output tokens.")
    context_window = serializers.IntegerField()
    max_output_tokens = serializers.IntegerField()
    max_tokens_param = serializers.ChoiceField(choices=AIModel.MaxTokensParam.values)
    supports_temperature = serializers.BooleanField()
    supports_streaming = serializers.BooleanField()
    env_suffix = serializers.CharField(allow_blank=True, help_text="Suffix of the <ROUTE>_USE_<SUFFIX> toggles.")
    key_set = serializers.BooleanField(help_text="Whether the provider's key is set (never the key).")


class ChainItemOutput(serializers.Serializer):
    id = serializers.CharField(help_text="The model id.")
    config = ModelConfigOutput()
    healthy = serializers.BooleanField(help_text="Not cooling down: chat may call it now.")
    state = serializers.ChoiceField(choices=STATES)
    cooldown_until = serializers.DateTimeField(allow_null=True)


class StoredChainEntryOutput(serializers.Serializer):
    model = serializers.CharField(help_text="provider/model_id")
    enabled = serializers.BooleanField()


class RouteConfigOutput(serializers.Serializer):
    """The route as chat sees it now (this worker's snapshot, overrides applied)."""

    route = serializers.CharField()
    enabled = serializers.BooleanField()
    primary_model = ChainItemOutput(allow_null=True, help_text="null when the chain is empty.")
    fallback_models = ChainItemOutput(many=True)
    total_models = serializers.IntegerField()
    healthy_models = serializers.IntegerField()
    override = serializers.CharField(
        allow_null=True, help_text="The environment overrides in force, joined with '; ', or null."
    )
    overrides = serializers.ListField(child=serializers.CharField(), help_text="The same, one per item.")
    stored_chain = StoredChainEntryOutput(
        many=True, help_text="The chain as stored (admin), primary first, disabled entries included."
    )
    fallback_route = serializers.CharField(
        allow_null=True, help_text="The route whose models follow once this chain is exhausted."
    )
    fallback_route_models = ChainItemOutput(many=True, help_text="Its models that this chain does not hold.")
    version = serializers.IntegerField(help_text="The configuration version of the snapshot.")


class ModelStatsOutput(serializers.Serializer):
    """A model's live statistics over the last ``window_seconds``, every process's attempts
    together. A request is an attempt that reached the model (probes and attempts whose
    client went away are not counted); a failed attempt is a request that failed. Latencies
    are of successful attempts; the figures are null where there is nothing to measure."""

    window_seconds = serializers.IntegerField(help_text="The window the figures cover (whole minutes).")
    requests = serializers.IntegerField()
    successes = serializers.IntegerField()
    success_rate = serializers.FloatField(
        allow_null=True, help_text="successes / requests, 0..1; null without requests."
    )
    p50_ms = serializers.FloatField(allow_null=True, help_text="Median latency of the successful attempts, ms.")
    p95_ms = serializers.FloatField(
        allow_null=True, help_text="95th percentile latency of the successful attempts, ms."
    )
    ttft_p50_ms = serializers.FloatField(
        allow_null=True, help_text="Median time to first token of the successful streams, ms."
    )
    cost_per_request = serializers.FloatField(allow_null=True, help_text="USD: the window's cost over its requests.")


def _errors(statuses: dict[int, str]) -> dict:
    return {status: OpenApiResponse(NativeErrorSerializer, description=text) for status, text in statuses.items()}


STAFF_ONLY = {
    401: "No credentials, or an invalid API key (WWW-Authenticate: Bearer).",
    403: "Not a staff user (session or API key).",
}
STAFF_ERRORS = _errors(STAFF_ONLY)


def admin_errors(bad_input: str = "A route that is not a slug (param: route).", *, body: bool = False) -> dict:
    """The admin API's error responses: 400 (``bad_input``), 401, 403 and 404, and 415
    for an endpoint that takes a ``body`` (JSON, a form or multipart)."""
    unsupported = {415: "A body that is not JSON, a form or multipart."} if body else {}
    return _errors({400: bad_input, **STAFF_ONLY, 404: "Unknown route.", **unsupported})
