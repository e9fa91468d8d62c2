from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import classify_views, views

urlpatterns = [
    path("api/v1/pam/chat", views.ChatView.as_view(), name="pam-chat"),
    path("api/v1/pam/classify", classify_views.ClassifyView.as_view(), name="pam-classify"),
    path("api/v1/health", views.HealthView.as_view(), name="health"),
    path("api/v1/admin/models/", include("modelhub.api.admin_urls")),
    path("api/v1/admin/rollouts/", include("modelhub.api.rollout_urls")),
    path("api/v1/pam/conversations/", include("modelhub.api.conversation_urls")),
    path("api/v1/models/", include("modelhub.api.registry_urls")),
    path("api/v1/pam/", include("modelhub.api.metrics_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("modelhub.api.openai_urls")),
    path("", include("modelhub.api.prometheus_urls")),
]
