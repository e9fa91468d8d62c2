"""The registry (providers, models, routes), health, API keys, the usage ledger, the
audit trail, cost rollups and alerts, rollouts and conversations."""

from .audit import ConfigChange
from .conversations import Conversation, ConversationMessage
from .costs import *  # noqa: F403
from .health import ModelHealth
from .prices import PriceCheck
from .registry import AIModel, Provider, Route, RouteEntry
from .rollouts import Rollout
from .usage import ApiKey, UsageRecord

__all__ = [
    "AIModel",
    "ApiKey",
    "ConfigChange",
    "Conversation",
    "ConversationMessage",
    "ModelHealth",
    "PriceCheck",
    "Provider",
    "Rollout",
    "Route",
    "RouteEntry",
    "UsageRecord",
]
