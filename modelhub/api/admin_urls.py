"""The admin API, mounted at /api/v1/admin/models/."""

from django.urls import path

from . import admin_views as views

urlpatterns = [
    path("config", views.ConfigView.as_view(), name="admin-models-config"),
    path("set-primary", views.SetPrimaryView.as_view(), name="admin-models-set-primary"),
    path("reload", views.ReloadView.as_view(), name="admin-models-reload"),
    path("available", views.AvailableView.as_view(), name="admin-models-available"),
    path("health", views.HealthView.as_view(), name="admin-models-health"),
]
