"""The rollouts admin API, mounted at /api/v1/admin/rollouts/."""

from django.urls import path

from . import rollout_views as views

urlpatterns = [
    path("", views.RolloutsView.as_view(), name="admin-rollouts"),
    path("<int:rollout_id>/", views.RolloutView.as_view(), name="admin-rollout"),
    path("<int:rollout_id>/pause", views.RolloutPauseView.as_view(), name="admin-rollout-pause"),
    path("<int:rollout_id>/resume", views.RolloutResumeView.as_view(), name="admin-rollout-resume"),
    path("<int:rollout_id>/advance", views.RolloutAdvanceView.as_view(), name="admin-rollout-advance"),
    path("<int:rollout_id>/rollback", views.RolloutRollbackView.as_view(), name="admin-rollout-rollback"),
    path("<int:rollout_id>/promote", views.RolloutPromoteView.as_view(), name="admin-rollout-promote"),
]
