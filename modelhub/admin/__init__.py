"""The operator's console. One module per area; importing them registers their admins;
``sections`` groups admin's index into the console's sections."""

from . import audit, costs, prices, registry, rollouts, schedules, sections, usage  # noqa: F401
