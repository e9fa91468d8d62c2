"""The ASGI entry point. API paths are served by a Django handler without the browser
middleware (sessions, CSRF, auth, messages, clickjacking): API clients authenticate by key,
and under ASGI every classic Django middleware costs two thread hops per request."""
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
web = get_asgi_application()

from modelhub.api.asgi import API_PATH_PREFIXES, ApiHandler  # noqa: E402  (needs apps ready)
from modelhub.providers.registry import adapter_classes_preload  # noqa: E402

api = ApiHandler()
# Import the SDKs the configuration uses now, off the event loop, rather than during the
# first request; the others (each SDK is 25-55 MB) only if a route comes to need them.
threading.Thread(target=adapter_classes_preload, name="modelhub-preload", daemon=True).start()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(API_PATH_PREFIXES):
        return await api(scope, receive, send)
    return await web(scope, receive, send)
