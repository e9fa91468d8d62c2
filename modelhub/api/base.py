"""The DRF pieces every chat endpoint shares, configured lean.

- ``HubView``: an adrf APIView whose dispatch runs DRF's steps (negotiation,
  authentication, permissions, throttles, handler, exception handler, finalize) in the
  event loop. adrf's own dispatch runs ``initial()`` on a worker thread, and Django renders
  a DRF Response on one too: two thread hops per request for work that is all in memory.
- one orjson parser (any content type: clients that send JSON without saying so work) and
  one orjson renderer, with a negotiation that picks it without reading Accept;
- ``ApiKeyAuthentication`` reads the key table of the routing snapshot (no query);
  ``HasApiKey`` requires a key and, per object, that the key may use the route;
  ``KeyRateThrottle`` counts the key's minute and day over the shared counters."""

from __future__ import annotations

import inspect
import os
import time

import orjson
from adrf.views import APIView
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from rest_framework import authentication, exceptions, negotiation, parsers, permissions, renderers
from rest_framework.metadata import SimpleMetadata
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from ..chat import ChatCall, chat_rate_check, chat_route_permit
from ..limits import LimitExceeded
from ..observability.context import request_id_bind
from ..routing.snapshot import KeySpec, Snapshot
from ..runtime import runtime
from ..services import API_KEY_EXPIRED, api_key_hash
from .auth import bearer_token
from .errors import NATIVE, RequestTooLarge, ServiceUnavailable


class OrjsonParser(parsers.BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MODELHUB["MAX_BODY_BYTES"]
        meta = parser_context["request"].META
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("Invalid Content-Length header.") from None
        raw = stream.read(limit + 1) if declared <= limit else b"x" * (limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise exceptions.ParseError("Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise exceptions.ParseError("Request body must be a JSON object.")
        return body


class AnyTypeJsonParser(OrjsonParser):
    """The same JSON, from clients that send no or another content type (curl -d)."""

    media_type = "*/*"


class OrjsonRenderer(renderers.BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return b"" if data is None else orjson.dumps(data)


class FirstRenderer(negotiation.BaseContentNegotiation):
    """JSON is what these endpoints speak (SSE is a raw byte stream): no Accept parsing."""

    def select_parser(self, request, parsers):
        content_type = request.content_type
        for parser in parsers:
            if parser.media_type == "*/*" or content_type.startswith(parser.media_type):
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class EndpointMetadata(SimpleMetadata):
    """OPTIONS describes the input to anyone: it is what the public schema says too."""

    def determine_actions(self, request, view):
        methods = [m for m in ("PUT", "POST") if m in view.allowed_methods]
        if not methods:  # a read-only view has no input to describe
            return {}
        serializer = view.get_serializer()
        return {method: self.get_serializer_info(serializer) for method in methods}


class KeyUser:
    """The caller of a chat endpoint: an API key, not necessarily a Django user."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, key: KeySpec):
        self.key, self.is_staff, self.pk = key, key.is_staff, None

    def __str__(self):
        return f"API key {self.key.name}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` against the snapshot's key table (no query). A key
    revoked (or deleted) is gone from the table after the reload its save triggers; an
    expiry, or the end of a rotated-out secret's grace, is read against the clock here."""

    def authenticate(self, request):
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        key = request.parser_context["view"].snapshot.keys.get(api_key_hash(token))
        if key is None:
            raise exceptions.AuthenticationFailed()
        if key.expired(time.time()):
            raise exceptions.AuthenticationFailed(API_KEY_EXPIRED)
        return KeyUser(key), key

    def authenticate_header(self, request):
        return "Bearer"


class HasApiKey(permissions.BasePermission):
    """A key is needed (OPTIONS, which only describes the endpoint, needs none); the
    object checked is a route name the key must be allowed to use."""

    def has_permission(self, request, view):
        return request.method == "OPTIONS" or request.auth is not None

    def has_object_permission(self, request, view, obj) -> bool:
        chat_route_permit(key=request.auth, route=obj)  # raises LimitExceeded (403)
        return True


class KeyRateThrottle(BaseThrottle):
    """The key's requests per minute and daily budget (shared counters, one round trip;
    nothing for a key without limits). ``refusal`` says which limit and until when."""

    refusal: LimitExceeded | None = None

    async def allow_request(self, request, view) -> bool:
        if request.auth is None or request.method == "OPTIONS":
            return True
        try:
            await chat_rate_check(key=request.auth)
        except LimitExceeded as exc:
            self.refusal = exc
            return False
        return True

    def wait(self):
        return self.refusal.retry_after if self.refusal else None


async def snapshot_current() -> Snapshot:
    try:
        return await runtime().routing.current()
    except DatabaseError:
        raise ServiceUnavailable() from None


class HubView(APIView):
    parser_classes = [OrjsonParser, AnyTypeJsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstRenderer
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    throttle_classes = [KeyRateThrottle]
    metadata_class = EndpointMetadata
    error_format = NATIVE
    default_route = "pam"  # the route of a body that names none
    snapshot: Snapshot

    def get_serializer(self, *args, **kwargs):
        """For OPTIONS (DRF's metadata describes the input serializer's fields)."""
        return self.InputSerializer(*args, **kwargs)

    def chat_call(self, request) -> tuple[ChatCall, dict]:
        """The validated body as a call to the chat service, once the key may use its route."""
        serializer = self.InputSerializer(data=request.data, context={"default_route": self.default_route})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        self.check_object_permissions(request, data["route"])
        call = ChatCall(
            self.snapshot,
            request.auth,
            data["route"],
            data["request"],
            self.request_id,
            self.started,
            conversation_id=data.get("conversation_id"),
        )
        return call, data

    async def async_dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.request_id, self.started = os.urandom(16).hex(), time.perf_counter()
        # Every log line from here on, and every Celery task the request publishes, carries
        # it; a streamed answer, sent after this returns, runs in the same asyncio task.
        request_id_bind(self.request_id)
        request = self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        try:
            await self.initial_async(request)
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:  # noqa: BLE001 - DRF's exception handling, as dispatch() does
            response = self.handle_exception(exc)
        response = self.finalize_response(request, response, *args, **kwargs)
        response["X-Request-ID"] = self.request_id
        response = rendered(response)
        # DRF links view, request and response both ways; unlinked, they are freed as soon
        # as the response is sent instead of waiting for the cyclic garbage collector.
        request.parser_context = self.request = None
        return response

    async def initial_async(self, request) -> None:
        """DRF's ``initial()`` with the throttles awaited and the snapshot loaded first."""
        self.format_kwarg = None
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        request.version, request.versioning_scheme = None, None
        self.snapshot = await snapshot_current()
        self.perform_authentication(request)
        self.check_permissions(request)
        for throttle in self.get_throttles():
            if not await throttle.allow_request(request, self):
                raise throttle.refusal or exceptions.Throttled(throttle.wait())


def rendered(response):
    """A DRF Response rendered here (orjson: in the event loop) and handed to Django as a
    plain response, which Django's ASGI handler sends as it is."""
    if not isinstance(response, Response):
        return response
    response.render()
    plain = HttpResponse(response.content, status=response.status_code)
    plain.headers = response.headers
    response.renderer_context = None
    return plain
