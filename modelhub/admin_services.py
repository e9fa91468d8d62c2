"""Writes the console needs that the shared services do not offer yet."""
from __future__ import annotations

from .models import ApiKey


def api_key_set_active(*, key: ApiKey, active: bool) -> None:
    """Saved one by one (not a queryset update) so the save signal bumps the config
    version and every worker stops accepting the key on its next request."""
    key.is_active = active
    key.save(update_fields=["is_active"])
