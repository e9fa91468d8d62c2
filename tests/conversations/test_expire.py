"""Retention: conversations follow the ledger's MODELHUB_USAGE_RETENTION_DAYS."""

from datetime import UTC, datetime, timedelta

from modelhub.conversations import conversations_expire
from modelhub.models import Conversation, ConversationMessage
from tests.conversations.conftest import say

NOW = datetime.now(UTC)


def _age(conversation_id: str, days: int, *, messages: bool = True) -> None:
    when = NOW - timedelta(days=days)
    Conversation.objects.filter(conversation_id=conversation_id).update(updated_at=when, created_at=when)
    if messages:
        ConversationMessage.objects.filter(conversation__conversation_id=conversation_id).update(created_at=when)


def test_conversations_idle_past_the_retention_go_with_their_messages(talk, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "USAGE_RETENTION_DAYS": 30}
    for name in ("old", "recent"):
        say(talk, "Hi", name)
    _age("old", 31)
    _age("recent", 29)

    assert conversations_expire(now=NOW) == 1

    assert list(Conversation.objects.values_list("conversation_id", flat=True)) == ["recent"]
    assert ConversationMessage.objects.filter(conversation__conversation_id="recent").count() == 2


def test_a_conversation_in_use_keeps_its_recent_turns_and_totals(talk, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "USAGE_RETENTION_DAYS": 30}
    say(talk, "Long ago")
    _age("c-1", 40)
    say(talk, "Today")

    assert conversations_expire(now=NOW + timedelta(minutes=1)) == 0

    conversation = Conversation.objects.get()
    assert [m.content for m in conversation.messages.filter(role="user")] == ["Today"]
    assert conversation.turns == 2
