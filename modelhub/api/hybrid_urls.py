"""The PAM hybrid document's paths: its chat answers as the native chat on route "hybrid"
(a complexity route: simple requests to the cheap chain, complex ones to the pam chain);
its health and metrics are the hub's."""

from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_view

from . import metrics_views, views
from .schema import NATIVE_ERRORS, SSE_NATIVE, answer_or_events

TAGS = ["PAM hybrid"]


class HybridChatView(views.ChatView):
    """The native chat; a body that names no route takes route "hybrid"."""

    default_route = "hybrid"

    @extend_schema(
        operation_id="pam_hybrid_chat",
        tags=TAGS,
        request=views.ChatInput,
        responses={**answer_or_events(views.ChatOutput, SSE_NATIVE), **NATIVE_ERRORS},
    )
    async def post(self, request):  # async, as the chat view's (adrf dispatches by it)
        return await super().post(request)


@extend_schema_view(get=extend_schema(operation_id="pam_hybrid_health", tags=TAGS))
class HybridHealthView(views.HealthView):
    pass


@extend_schema_view(get=extend_schema(operation_id="pam_hybrid_metrics", tags=TAGS))
class HybridMetricsView(metrics_views.MetricsView):
    pass


urlpatterns = [
    path("chat", HybridChatView.as_view(), name="pam-hybrid-chat"),
    path("health", HybridHealthView.as_view(), name="pam-hybrid-health"),
    path("metrics", HybridMetricsView.as_view(), name="pam-hybrid-metrics"),
]
