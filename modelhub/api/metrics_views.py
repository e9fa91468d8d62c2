"""GET /api/v1/pam/metrics: today's requests, failures, fallbacks and cost per route and
per model, for staff (admin session or a staff user's API key)."""
from __future__ import annotations

from decimal import Decimal

from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors

EMPTY = dict.fromkeys(selectors.FIGURES, 0)


def figures_out(figures: dict) -> dict:
    figures = {**EMPTY, **figures}
    cost, requests = Decimal(figures.pop("cost_usd")), figures["requests"]
    return {**figures, "cost_today_usd": float(cost),
            "avg_cost_per_request_usd": float(cost / requests) if requests else None}


class MetricsView(APIView):
    permission_classes = [permissions.IsAdminUser]

    def get(self, request):
        metrics = selectors.usage_metrics_today()
        return Response({
            "day": metrics["day"].isoformat(),
            "totals": figures_out(metrics["totals"]),
            "routes": {name: figures_out(f) for name, f in sorted(metrics["routes"].items())},
            "models": {name: figures_out(f) for name, f in sorted(metrics["models"].items())},
            "probes": figures_out(metrics["probes"]),
        })
