from django.urls import include, path

from . import views

urlpatterns = [
    path("api/v1/pam/chat", views.chat, name="pam-chat"),
    path("api/v1/health", views.health, name="health"),
    path("api/v1/admin/models/", include("modelhub.api.admin_urls")),
    path("api/v1/pam/", include("modelhub.api.metrics_urls")),
    path("v1/", include("modelhub.api.openai_urls")),
]
