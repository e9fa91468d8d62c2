"""The registry (providers, models, routes), health, API keys, the usage ledger, the
audit trail, cost rollups and alerts."""

from .audit import ConfigChange
from .costs import *  # noqa: F403
from .health import ModelHealth
from .prices import PriceCheck
from .registry import AIModel, Provider, Route, RouteEntry
from .usage import ApiKey, UsageRecord

__all__ = [
    "AIModel",
    "ApiKey",
    "ConfigChange",
    "ModelHealth",
    "PriceCheck",
    "Provider",
    "Route",
    "RouteEntry",
    "UsageRecord",
]
