from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

# Served without middleware; every view under them authenticates by API key.
API_PATH_PREFIXES = ("/api/v1/pam/chat", "/v1/")


class ApiHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain, and without a per-request
    thread-sensitive context: that context starts and joins a fresh thread for every request
    whose signals touch sync code (request_started's close_old_connections does), about a
    tenth of a chat request's CPU. These views do their rare sync work (a configuration
    reload) on asgiref's one shared sync thread instead."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)
