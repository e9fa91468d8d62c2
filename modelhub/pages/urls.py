"""The operator's pages: dashboard, playground (server-rendered, staff only)."""

from django.urls import path

from . import dashboard, playground

urlpatterns = [
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/live", dashboard.dashboard_live, name="dashboard-live"),
    path("dashboard/days/", dashboard.day_page, name="dashboard-days"),
    path("dashboard/routes/<str:name>/", dashboard.route_page, name="dashboard-route"),
    path("dashboard/models/<str:provider>/<path:model_id>/", dashboard.model_page, name="dashboard-model"),
    path("playground/", playground.playground, name="playground"),
    path("playground/chat", playground.PlaygroundChatView.as_view(), name="playground-chat"),
    path("playground/fault", playground.fault, name="playground-fault"),
]
