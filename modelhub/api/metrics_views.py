"""GET /api/v1/pam/metrics: today's requests, failures, fallbacks and cost per route and
per model, for staff (admin session or a staff user's API key)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from .admin_serializers import STAFF_ERRORS

EMPTY = dict.fromkeys(selectors.FIGURES, 0)


def figures_out(figures: dict) -> dict:
    figures = {**EMPTY, **figures}
    cost, requests = Decimal(figures.pop("cost_usd")), figures["requests"]
    return {
        **figures,
        "cost_today_usd": float(cost),
        "avg_cost_per_request_usd": float(cost / requests) if requests else None,
    }


def _money(figures: dict) -> dict:
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in figures.items()}


class FiguresOutput(serializers.Serializer):
    requests = serializers.IntegerField(help_text="Requests, each counted once (on its last attempt).")
    attempts = serializers.IntegerField(help_text="Calls to models, failed ones included.")
    failures = serializers.IntegerField(help_text="Attempts that failed.")
    fallbacks = serializers.IntegerField(help_text="Requests answered by a fallback model.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_today_usd = serializers.FloatField()
    avg_cost_per_request_usd = serializers.FloatField(allow_null=True, help_text="null without requests.")


class ComplexityOutput(serializers.Serializer):
    requests = serializers.IntegerField()
    complex_requests = serializers.IntegerField(help_text="Requests the classifier sent to the complex route.")
    strong_share = serializers.FloatField(allow_null=True, help_text="complex_requests / requests.")
    cost_usd = serializers.FloatField()
    counterfactual_cost_usd = serializers.FloatField(
        help_text="What the complex route's primary would have cost for the same tokens."
    )
    saving_usd = serializers.FloatField(help_text="counterfactual_cost_usd - cost_usd.")


class MetricsOutput(serializers.Serializer):
    day = serializers.DateField(help_text="Today (UTC).")
    totals = FiguresOutput(help_text="Client traffic (probes apart).")
    routes = serializers.DictField(child=FiguresOutput(), help_text="Route name -> its figures.")
    models = serializers.DictField(child=FiguresOutput(), help_text="provider/model_id -> its figures.")
    probes = FiguresOutput(help_text="Health probes.")
    complexity = serializers.DictField(
        child=ComplexityOutput(), help_text="Complexity route name -> its split and saving of the day."
    )


class MetricsView(APIView):
    """Today's figures from the usage ledger: in total, per route, per model, and for probes."""

    permission_classes = [permissions.IsAdminUser]
    OutputSerializer = MetricsOutput

    @extend_schema(operation_id="pam_metrics", tags=["metrics (staff)"], responses={200: MetricsOutput, **STAFF_ERRORS})
    def get(self, request):
        metrics = selectors.usage_metrics_today()
        complexity = selectors.complexity_metrics(day=metrics["day"])
        return Response(
            self.OutputSerializer(
                {
                    "day": metrics["day"].isoformat(),
                    "totals": figures_out(metrics["totals"]),
                    "routes": {name: figures_out(f) for name, f in sorted(metrics["routes"].items())},
                    "models": {name: figures_out(f) for name, f in sorted(metrics["models"].items())},
                    "probes": figures_out(metrics["probes"]),
                    "complexity": {name: _money(f) for name, f in sorted(complexity.items())},
                }
            ).data
        )
