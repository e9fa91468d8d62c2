"""The model registry, mounted at /api/v1/models/. A model id may hold "/" (OpenRouter's
"meta-llama/llama-3.1-8b", or "provider/model_id") and dots: the path converter takes the
rest of the path up to the closing slash."""

from django.urls import path

from . import registry_views

urlpatterns = [
    path("", registry_views.ModelRegistryListView.as_view(), name="models-registry-list"),
    path("<path:model_id>/", registry_views.ModelRegistryDetailView.as_view(), name="models-registry-detail"),
]
