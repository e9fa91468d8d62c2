"""The operator's console. One module per area; importing them registers their admins."""

from . import audit, costs, prices, registry, schedules, usage  # noqa: F401
