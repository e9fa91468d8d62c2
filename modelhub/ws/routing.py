"""The websocket paths: ``ws/chat/`` and the PAM hybrid document's
``/api/v1/pam-hybrid/ws/<user_id>``; any other path is refused at the handshake."""

from channels.routing import URLRouter
from django.urls import re_path

from .consumers import ChatConsumer, HybridChatConsumer, NoSuchSocket

USER_ID = r"(?P<user_id>[^/]{1,150})"  # within a conversation id's 200 characters

websocket_urlpatterns = [
    re_path(r"^ws/chat/?$", ChatConsumer.as_asgi()),
    re_path(rf"^api/v1/pam-hybrid/ws/{USER_ID}/?$", HybridChatConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),
]

application = URLRouter(websocket_urlpatterns)
