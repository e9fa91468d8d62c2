from django.urls import path

from . import metrics_views

urlpatterns = [
    path("metrics", metrics_views.MetricsView.as_view(), name="pam-metrics"),
]
