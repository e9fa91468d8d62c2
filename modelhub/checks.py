"""System checks: a configuration the hub cannot obey stops start-up with a clear message.

They read the registry the way a worker does (``snapshot_build``, the same override
functions), so they report exactly what routing would do. Before ``migrate`` (no tables
yet) or without a reachable database they say nothing.

The override checks run on every command (they only speak when override variables are
set); the same messages stop the ASGI server's start-up (``pam/asgi.py``, lifespan) and
the Celery worker's (``pam/celery.py``) unless ``MODELHUB_START_DEGRADED`` is true. The
provider-key check is a deployment check (``manage.py check --deploy``, the deploy step
before the web tier starts): it must not block ``migrate`` on a machine that has no keys
yet, and at run time a model whose key is unset is skipped anyway. So is the lifecycle check
(a warning: routing already puts a retired model's successor in its place, but a deploy is
the moment to notice that a route leans on a model about to go)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from .lifecycle import RETIRED, routes_at_risk, state_text
from .routing.overrides import (
    NO_TOGGLE,
    SEVERAL_TOGGLES,
    UNKNOWN_MODEL,
    overrides_problems,
)

IDS = {UNKNOWN_MODEL: "modelhub.E001", NO_TOGGLE: "modelhub.E002", SEVERAL_TOGGLES: "modelhub.E003"}
HINTS = {
    UNKNOWN_MODEL: "Fix the variable, or add and enable the model in admin → AI models.",
    NO_TOGGLE: "Exactly one <ROUTE>_USE_<SUFFIX> must be true for a route that uses toggles.",
    SEVERAL_TOGGLES: "Exactly one <ROUTE>_USE_<SUFFIX> must be true for a route that uses toggles.",
}
log = logging.getLogger("modelhub")


def _snapshot():
    """The registry as routing would see it, or None when it cannot be read yet."""
    from .routing.snapshot import snapshot_build

    try:
        return snapshot_build(version=0)
    except DatabaseError:
        return None


@register(Tags.database)
def overrides_check(app_configs=None, databases=None, **kwargs):
    return overrides_messages()


def overrides_messages() -> list[CheckMessage]:
    """One error per override setting that cannot be obeyed: the system check, the ASGI
    lifespan and the Celery worker all report these."""
    snapshot = _snapshot()
    if snapshot is None:
        return []
    problems = overrides_problems(routes=snapshot.routes, models=snapshot.models, environ=os.environ)
    return [Error(f"Environment override: {p.message}", hint=HINTS[p.code], id=IDS[p.code]) for p in problems]


def startup_refusal(*, process: str) -> str | None:
    """Why ``process`` (the web server, the worker) must not start, worded as
    ``manage.py check`` words it; None when it may. With MODELHUB_START_DEGRADED it starts
    anyway (the bad settings are ignored, as routing always does) and this is logged."""
    messages = overrides_messages()
    if not messages:
        return None
    report = "System check identified some issues:\n\nERRORS:\n" + "\n".join(str(m) for m in messages)
    if settings.MODELHUB["START_DEGRADED"]:
        log.warning("%s starts degraded (MODELHUB_START_DEGRADED=true). %s", process, report)
        return None
    return f"{report}\n\nThe {process} does not start; set MODELHUB_START_DEGRADED=true to start it anyway."


@register(deploy=True)
def provider_keys_check(app_configs=None, **kwargs):
    snapshot = _snapshot()
    if snapshot is None:
        return []
    level, check_id = (Warning, "modelhub.W004") if settings.DEBUG else (Error, "modelhub.E004")
    hint = "Export the variable (its value is never stored nor shown), or take the models out of the routes."
    return [level(message, hint=hint, id=check_id) for message in keys_missing(snapshot)]


def keys_missing(snapshot) -> list[str]:
    """One message per provider key variable that is unset while a model of an enabled
    route (after overrides) needs it."""
    missing: dict[str, dict[str, set[str]]] = {}
    for route in snapshot.routes.values():
        for model in route.chain if route.enabled else ():
            if not model.provider.api_key:
                users = missing.setdefault(model.provider.api_key_env, {})
                users.setdefault(model.model_id, set()).add(route.name)
    return [
        f"{variable} is not set, but models in use need it: "
        + ", ".join(f"{m} (route {', '.join(sorted(r))})" for m, r in sorted(users.items()))
        for variable, users in sorted(missing.items())
    ]


@register(deploy=True)
def lifecycle_check(app_configs=None, **kwargs):
    snapshot = _snapshot()
    if snapshot is None:
        return []
    hint = (
        "Set the model's successor and enable it (admin → AI models → Lifecycle), or take the model out of the route."
    )
    return [Warning(message, hint=hint, id="modelhub.W005") for message in models_retiring(snapshot)]


def models_retiring(snapshot) -> list[str]:
    """One message per enabled route and model that retires within WARNING_DAYS or is
    retired, saying what routing puts in its place."""
    today = datetime.now(UTC).date()
    models_by_pk = {model.pk: model for model in snapshot.models.values()}
    return [
        f"Route {risk.route!r} uses {risk.model.model_id}, "
        + ("which " if risk.state != RETIRED else "")
        + f"{state_text(risk.model, today)}: {risk.successor}."
        for risk in routes_at_risk(snapshot.routes.values(), models_by_pk, today)
    ]
