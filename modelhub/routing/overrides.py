"""Environment overrides of route chains (FORCE_MODEL, DEFAULT_<ROUTE>_MODEL,
PAM_PRIMARY_MODEL / PAM_FALLBACK_MODEL_<N>, <ROUTE>_USE_<SUFFIX>=true)."""
from __future__ import annotations


def overrides_apply(*, routes: dict, models: dict) -> dict:
    """The routes with the environment's overrides applied (not implemented yet)."""
    return routes
