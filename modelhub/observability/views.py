"""``GET /metrics``: the Prometheus exposition (text format, or OpenMetrics when the scraper
asks for it), for a scraper that presents the metrics token (``MODELHUB_METRICS_TOKEN``) or
that connects from an allowed network (``MODELHUB_METRICS_ALLOWED_NETWORKS``, default the
loopback addresses). The address is the connection's: behind a proxy, the one uvicorn takes
from X-Forwarded-For when the proxy is in its ``--forwarded-allow-ips``.

Refusals are JSON in the hub's native error shape: 401 (WWW-Authenticate: Bearer) for a
wrong token, or for no token from elsewhere when a token is configured; 403 from elsewhere
when none is. Served while the database is down: the model states then come from the last
configuration this process read."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client.exposition import choose_encoder
from rest_framework import authentication, exceptions, permissions
from rest_framework.views import APIView

from ..api.auth import bearer_token
from ..api.base import FirstRenderer, OrjsonRenderer
from ..api.errors import NATIVE
from ..api.serializers import NativeErrorSerializer
from ..routing.snapshot import Snapshot
from ..runtime import runtime
from .metrics import ModelStates, Scrape, counts_source, hub_metrics

log = logging.getLogger("modelhub.observability")
SCRAPER = "metrics-token"  # request.auth of a scraper that presented the token
TOKEN_REQUIRED = "A metrics token is required (Authorization: Bearer <MODELHUB_METRICS_TOKEN>)."
NOT_ALLOWED = "Metrics are served only to the networks in MODELHUB_METRICS_ALLOWED_NETWORKS, or with the metrics token."


class MetricsTokenAuthentication(authentication.BaseAuthentication):
    """The metrics token as a bearer token; any Authorization is ignored when none is set."""

    def authenticate(self, request):
        expected = settings.MODELHUB["METRICS_TOKEN"]
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION")) if expected else None
        if token is None:
            return None
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise exceptions.AuthenticationFailed("Invalid metrics token.")
        return None, SCRAPER

    def authenticate_header(self, request):
        return "Bearer"


class MetricsAccess(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.auth == SCRAPER or address_allowed(request.META.get("REMOTE_ADDR")):
            return True
        if settings.MODELHUB["METRICS_TOKEN"]:
            raise exceptions.NotAuthenticated(TOKEN_REQUIRED)
        raise exceptions.PermissionDenied(NOT_ALLOWED)


def address_allowed(address: str | None) -> bool:
    """Whether the client's address is in an allowed network (an IPv4 address mapped into
    IPv6 counts as the IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in allowed_networks(tuple(settings.MODELHUB["METRICS_ALLOWED_NETWORKS"])))


@lru_cache(maxsize=8)
def allowed_networks(entries: tuple[str, ...]) -> tuple:
    """The configured networks; an entry that is no network is left out (and logged), so a
    typo narrows access, never widens it."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.error("MODELHUB_METRICS_ALLOWED_NETWORKS: %r is not a network; left out", entry)
    return tuple(networks)


class PrometheusMetricsView(APIView):
    authentication_classes = [MetricsTokenAuthentication]
    permission_classes = [MetricsAccess]
    throttle_classes: list = []
    # The exposition's format follows Accept (choose_encoder); DRF's renderer only ever
    # renders a refusal, as JSON, whatever Accept says.
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstRenderer
    error_format = NATIVE

    @extend_schema(
        operation_id="prometheus_metrics",
        tags=["metrics"],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The Prometheus text format."),
            401: OpenApiResponse(NativeErrorSerializer, description="A wrong metrics token, or none when one is set."),
            403: OpenApiResponse(NativeErrorSerializer, description="Not from an allowed network (no token set)."),
        },
    )
    def get(self, request):
        encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
        return HttpResponse(encoder(Scrape(counts_source(hub_metrics()), model_states())), content_type=content_type)


def model_states() -> ModelStates:
    """The registry's models and their breaker states as this process sees them."""
    routing = runtime().routing
    snapshot: Snapshot | None
    try:
        snapshot = routing.current_sync()
    except DatabaseError:  # the last configuration this process read, if any
        snapshot = routing.snapshot
    models = {model.pk: model for model in snapshot.models.values()} if snapshot is not None else {}
    ordered = sorted(models.values(), key=lambda m: (m.provider.name, m.model_id))
    now = time.time()
    return ModelStates(ordered, lambda model: routing.board.get(model.pk).effective_state(now))


class MetricsTokenScheme(OpenApiAuthenticationExtension):
    target_class = "modelhub.observability.views.MetricsTokenAuthentication"
    name = "MetricsToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "MODELHUB_METRICS_TOKEN; none needed from MODELHUB_METRICS_ALLOWED_NETWORKS.",
        }
