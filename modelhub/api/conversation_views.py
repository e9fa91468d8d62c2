"""``GET /api/v1/pam/conversations/<conversation_id>``: one conversation of the calling key,
its totals and its messages (each answer with the model that gave it, its tokens and its
cost). Another key's conversation answers 404, as an unknown one does: a key cannot tell
which conversation ids exist."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from ..conversations import conversation_get
from ..models import Conversation, ConversationMessage
from .base import HubView
from .errors import ServiceUnavailable
from .serializers import FastOutputSerializer, NativeErrorSerializer, NativeUsageSerializer

UNAVAILABLE = "Conversations cannot be read (database unavailable); try again shortly."


class ConversationMessageOutput(serializers.Serializer):
    role = serializers.CharField(help_text='"user", "assistant" or "tool".')
    content = serializers.CharField(allow_blank=True, help_text="Images are not kept: a marker stands in their place.")
    tool_calls = serializers.JSONField(
        allow_null=True,
        help_text="An answer's tool calls in OpenAI's shape; for a tool result, the call it answers "
        '({"tool_call_id", "name"}); else null.',
    )
    model = serializers.CharField(allow_null=True, help_text="The model that answered (answers only).")
    provider = serializers.CharField(allow_null=True)
    usage = NativeUsageSerializer(allow_null=True, help_text="The answer's tokens (answers only).")
    cost_usd = serializers.FloatField(allow_null=True, help_text="The answer's cost (answers only).")
    request_id = serializers.CharField(help_text="The request that brought the message.")
    created_at = serializers.DateTimeField()


class ConversationOutput(FastOutputSerializer):
    conversation_id = serializers.CharField()
    route = serializers.CharField(help_text="The route (or model id) its last turn asked for.")
    turns = serializers.IntegerField(help_text="Answers given.")
    usage = NativeUsageSerializer(help_text="Tokens of every answer (the input counts the history each was sent).")
    cost_usd = serializers.FloatField(help_text="Cost of every answer, in USD.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    messages = ConversationMessageOutput(many=True, help_text="Oldest first.")

    def represent(self, found: tuple[Conversation, list[ConversationMessage]]) -> dict:
        conversation, messages = found
        return {
            "conversation_id": conversation.conversation_id,
            "route": conversation.route,
            "turns": conversation.turns,
            "usage": {"input_tokens": conversation.input_tokens, "output_tokens": conversation.output_tokens},
            "cost_usd": float(conversation.cost_usd),
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
            "messages": [message_out(m) for m in messages],
        }


def message_out(message: ConversationMessage) -> dict:
    answer = message.role == "assistant"
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": message.tool_calls,
        "model": message.model if answer else None,
        "provider": message.provider if answer else None,
        "usage": {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens} if answer else None,
        "cost_usd": float(message.cost_usd) if answer else None,
        "request_id": message.request_id,
        "created_at": message.created_at.isoformat(),
    }


class ConversationView(HubView):
    """Any valid key, for its own conversations; not counted against its rate (nothing is called)."""

    OutputSerializer = ConversationOutput
    throttle_classes: list = []
    http_method_names = ["get", "head"]

    @extend_schema(
        operation_id="pam_conversation",
        tags=["conversations"],
        parameters=[
            OpenApiParameter(
                "conversation_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The conversation_id the chat requests gave (it may hold '/').",
            )
        ],
        responses={
            200: ConversationOutput,
            401: OpenApiResponse(NativeErrorSerializer, description="Missing, invalid or expired API key."),
            404: OpenApiResponse(NativeErrorSerializer, description="No conversation of this key has that id."),
            503: OpenApiResponse(NativeErrorSerializer, description="The database cannot be read."),
        },
    )
    async def get(self, request, conversation_id: str):
        try:
            found = await sync_to_async(conversation_get)(key_pk=request.auth.pk, conversation_id=conversation_id)
        except DatabaseError:
            raise ServiceUnavailable(UNAVAILABLE) from None
        if found is None:
            raise exceptions.NotFound(f"No conversation '{conversation_id}' for this key.")
        return Response(self.OutputSerializer(found).data)
