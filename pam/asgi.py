"""The ASGI entry point. API paths are served by a Django handler without the browser
middleware (sessions, CSRF, auth, messages, clickjacking): API clients authenticate by key,
and under ASGI every classic Django middleware costs two thread hops per request."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
web = get_asgi_application()

from modelhub.api.asgi import API_PATH_PREFIXES, ApiHandler  # noqa: E402  (needs apps ready)

from modelhub.providers.registry import ADAPTERS, adapter_class  # noqa: E402

api = ApiHandler()
for kind in ADAPTERS:  # import the SDKs now rather than during the first request
    adapter_class(kind)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(API_PATH_PREFIXES):
        return await api(scope, receive, send)
    return await web(scope, receive, send)
