from decimal import Decimal

from django.conf import settings
from django.db import models

from .usage import ApiKey


class Conversation(models.Model):
    """The turns of one ``conversation_id``, owned by the API key (or the staff user of
    the playground) that started it: another owner never sees it."""

    conversation_id = models.CharField(max_length=200)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    route = models.CharField(max_length=200, blank=True, help_text="The route (or model id) of its last turn.")
    turns = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "conversation_id"],
                condition=models.Q(api_key__isnull=False),
                name="conversation_unique_per_key",
            ),
            models.UniqueConstraint(
                fields=["user", "conversation_id"],
                condition=models.Q(user__isnull=False),
                name="conversation_unique_per_user",
            ),
        ]

    def __str__(self):
        return self.conversation_id


class ConversationMessage(models.Model):
    """One message of a conversation: the caller's (``user``) or the answer (``assistant``,
    with the model that gave it, its tokens and its cost)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16)
    content = models.TextField(blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal(0))
    request_id = models.CharField(max_length=32, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "id"]

    def __str__(self):
        return f"{self.conversation_id} {self.role}"
