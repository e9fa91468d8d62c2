from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/pam/chat", views.chat, name="pam-chat"),
    path("api/v1/health", views.health, name="health"),
]
