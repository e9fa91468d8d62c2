"""Conversations, mounted at /api/v1/pam/conversations/. A conversation id is the caller's
own string and may hold "/": the path converter takes the rest of the path."""

from django.urls import path

from . import conversation_views

urlpatterns = [
    path("<path:conversation_id>", conversation_views.ConversationView.as_view(), name="pam-conversation"),
]
