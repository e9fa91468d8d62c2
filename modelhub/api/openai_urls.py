"""The OpenAI-compatible API, mounted at /v1/ (served without browser middleware)."""

from django.urls import path

from . import openai_views

urlpatterns = [
    path("chat/completions", openai_views.CompletionsView.as_view(), name="openai-chat-completions"),
    path("models", openai_views.ModelsView.as_view(), name="openai-models"),
]
