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

    async def listen_for_disconnect(self, receive):
        """Django's, returning where it raises RequestAborted: the handler treats both
        alike (the response task is cancelled if it is still running), and the exception
        would tie its task, traceback and frames into a cycle left for the garbage
        collector, on every request (the ASGI server reports a disconnect after each
        response)."""
        message = await receive()
        if message["type"] != "http.disconnect":
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")
