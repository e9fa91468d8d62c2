"""``POST /api/v1/pam/classify``: what the hub makes of a chat body without answering it.
The body is the native chat's, checked by the same key, permissions, limits and errors;
the answer is the classifier's verdict and the route the request would take under its
route's strategy. No model is called and nothing is written to the ledger."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ..chat import ChatCall, chat_choice
from ..routing.classifier import CATEGORIES, TIERS, Classification, classify
from ..routing.snapshot import RouteSpec
from .base import HubView
from .schema import NATIVE_ERRORS
from .serializers import FastOutputSerializer
from .views import ChatInput

CLASSIFY_ERRORS = {status: NATIVE_ERRORS[status] for status in (400, 401, 403, 404, 413, 429, 503)}


class ClassifyOutput(FastOutputSerializer):
    tier = serializers.ChoiceField(choices=TIERS, help_text="simple or complex: the score against the threshold.")
    category = serializers.ChoiceField(choices=CATEGORIES, help_text="multimedia when the request has an image.")
    score = serializers.FloatField(help_text="0..1: the higher, the more complex.")
    signals = serializers.ListField(
        child=serializers.CharField(), help_text='The evidence that counted, e.g. ["code", "multi_step"].'
    )
    route = serializers.CharField(
        help_text="The route whose chain the request would walk: a complexity route's simple or complex "
        "route, else the route asked for (or the model id)."
    )

    def represent(self, verdict: tuple[Classification, RouteSpec]) -> dict:
        classification, route = verdict
        return {
            "tier": classification.tier,
            "category": classification.category,
            "score": classification.score,
            "signals": list(classification.signals),
            "route": route.name,
        }


class ClassifyView(HubView):
    """Classify a chat request and say which route it would take, without answering it."""

    InputSerializer = ChatInput
    OutputSerializer = ClassifyOutput

    @extend_schema(
        operation_id="pam_classify",
        tags=["chat"],
        request=ChatInput,
        responses={200: ClassifyOutput, **CLASSIFY_ERRORS},
    )
    async def post(self, request):
        call, data = self.chat_call(request)
        return Response(self.OutputSerializer(request_classify(call, stream=data["stream"])).data)


def request_classify(call: ChatCall, *, stream: bool) -> tuple[Classification, RouteSpec]:
    """The classifier's verdict on the request (with its route's settings) and the route its
    strategy would send it to; the chat's own errors for a route that cannot answer."""
    route, choice = chat_choice(call, stream=stream)
    return choice.classification or classify(call.request, route), choice.route
