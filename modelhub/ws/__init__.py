"""Websocket chat (Django Channels), served by the same ASGI application as the API."""
