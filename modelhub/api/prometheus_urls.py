from django.urls import path

from ..observability.views import PrometheusMetricsView

urlpatterns = [
    path("metrics", PrometheusMetricsView.as_view(), name="prometheus-metrics"),
]
