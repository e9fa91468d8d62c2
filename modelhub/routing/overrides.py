"""Environment overrides of route chains, the seed systems' conventions. Highest first:

- ``FORCE_MODEL``: every route, and every request naming a model id, answers from this
  one model, without fallback (BizPilot);
- ``DEFAULT_<ROUTE>_MODEL``: the route's primary (BizPilot);
- ``PAM_PRIMARY_MODEL``, ``PAM_FALLBACK_MODEL_<N>``: the ``pam`` route's chain (PAM);
- ``<ROUTE>_USE_<SUFFIX>=true``: the route's primary, picked by the model's env suffix,
  exactly one true per route (Exora);
- below them all, the chain stored in admin.

A primary set here goes in front of the chain that is left, so failover still has the
stored fallbacks behind it. The environment is read whenever a worker rebuilds its
snapshot. A setting that cannot be obeyed (unknown model, zero or several toggles) is
ignored here and reported by the system checks (``modelhub/checks.py``), which call the
same functions; the ASGI server and the Celery worker refuse to start on it too."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

log = logging.getLogger("modelhub.routing")

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
FORCE = "FORCE_MODEL"
PAM_ROUTE = "pam"
PAM_PRIMARY = "PAM_PRIMARY_MODEL"
PAM_FALLBACK_PREFIX = "PAM_FALLBACK_MODEL_"

UNKNOWN_MODEL = "unknown_model"
NO_TOGGLE = "no_toggle"
SEVERAL_TOGGLES = "several_toggles"


@dataclass(frozen=True, slots=True)
class Problem:
    code: str  # UNKNOWN_MODEL | NO_TOGGLE | SEVERAL_TOGGLES
    message: str


@dataclass(slots=True)
class Resolution:
    """A route's chain as the layers leave it, with what each layer did."""

    chain: tuple
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    _primary_note: int | None = None

    def set_primary(self, model, setting: str) -> None:
        self._shadow(self._primary_note, setting)
        self.chain = (model, *(m for m in self.chain if m.pk != model.pk))
        self._primary_note = self._note(f"{setting} (primary)")

    def set_only(self, model, setting: str) -> None:
        for index in range(len(self.notes)):
            self._shadow(index, setting)
        self.chain = (model,)
        self._primary_note = self._note(f"{setting} (the only model, every route)")

    def set_fallbacks(self, models: list, settings: list[str]) -> None:
        head = self.chain[:1]
        self.chain = (*head, *(m for m in _unique(models) if all(m.pk != h.pk for h in head)))
        self._note(f"{', '.join(settings)} (fallbacks)")

    def problem(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message))

    @property
    def description(self) -> str | None:
        ignored = [f"ignored: {p.message}" for p in self.problems]
        return "; ".join(self.notes + ignored) or None

    def _note(self, text: str) -> int:
        self.notes.append(text)
        return len(self.notes) - 1

    def _shadow(self, index: int | None, setting: str) -> None:
        if index is not None and "shadowed" not in self.notes[index]:
            variable = setting.partition("=")[0]
            self.notes[index] = self.notes[index][:-1] + f", shadowed by {variable})"


def _unique(models: list) -> list:
    seen, unique = set(), []
    for model in models:
        if model.pk not in seen:
            seen.add(model.pk)
            unique.append(model)
    return unique


def route_env_prefix(route: str) -> str:
    """``pass_05`` -> ``PASS_05``: the prefix of a route's variables."""
    return route.upper().replace("-", "_")


def env_value(environ: Mapping, variable: str) -> str:
    return (environ.get(variable) or "").strip()


def toggles_read(*, prefix: str, environ: Mapping) -> dict[str, bool]:
    """``<PREFIX>_USE_<SUFFIX>`` variables of one route: suffix -> whether it is true."""
    start = f"{prefix}_USE_"
    return {
        name[len(start) :]: value.strip().lower() in TRUE_VALUES
        for name, value in environ.items()
        if name.startswith(start) and len(name) > len(start)
    }


def pam_fallbacks_read(environ: Mapping) -> list[tuple[str, str]]:
    """``PAM_FALLBACK_MODEL_<N>`` (variable, value) pairs in N order, empty ones left out."""
    numbered = [
        (int(name[len(PAM_FALLBACK_PREFIX) :]), name)
        for name in environ
        if name.startswith(PAM_FALLBACK_PREFIX) and name[len(PAM_FALLBACK_PREFIX) :].isdigit()
    ]
    return [(name, env_value(environ, name)) for _, name in sorted(numbered) if env_value(environ, name)]


def _lookup(result: Resolution, variable: str, value: str, models: Mapping):
    model = models.get(value)
    if model is None:
        result.problem(
            UNKNOWN_MODEL,
            f"{variable}={value} names no enabled model (use a model_id or provider/model_id from the registry).",
        )
    return model


def _toggle_layer(result: Resolution, route: str, models: Mapping, environ: Mapping) -> None:
    prefix = route_env_prefix(route)
    suffixes = {m.env_suffix: m for m in models.values() if m.env_suffix}
    toggles = {s: on for s, on in toggles_read(prefix=prefix, environ=environ).items() if on or s in suffixes}
    if not toggles:
        return
    chosen = sorted(s for s, on in toggles.items() if on)
    if len(chosen) != 1:
        _toggle_count_problem(result, route, prefix, chosen, suffixes)
        return
    variable = f"{prefix}_USE_{chosen[0]}"
    model = suffixes.get(chosen[0])
    if model is None:
        result.problem(
            UNKNOWN_MODEL, f"{variable}=true names no enabled model (no enabled model has env suffix {chosen[0]})."
        )
        return
    result.set_primary(model, f"{variable}=true")


def _toggle_count_problem(result, route, prefix, chosen, suffixes) -> None:
    options = ", ".join(f"{prefix}_USE_{s}" for s in sorted(suffixes))
    if chosen:
        names = ", ".join(f"{prefix}_USE_{s}" for s in chosen)
        result.problem(
            SEVERAL_TOGGLES, f"route '{route}' has several model toggles true ({names}); set exactly one to true."
        )
    else:
        result.problem(
            NO_TOGGLE, f"route '{route}' uses model toggles but none is true; set exactly one of {options} to true."
        )


def _pam_layer(result: Resolution, models: Mapping, environ: Mapping) -> None:
    """With both PAM_PRIMARY_MODEL and fallbacks set, the environment names the whole chain."""
    value = env_value(environ, PAM_PRIMARY)
    primary = _lookup(result, PAM_PRIMARY, value, models) if value else None
    fallbacks = [(v, _lookup(result, v, raw, models)) for v, raw in pam_fallbacks_read(environ)]
    fallbacks = [(v, m) for v, m in fallbacks if m is not None]
    if fallbacks:
        if primary is not None:
            result.chain = (primary,)
        result.set_fallbacks([m for _, m in fallbacks], [f"{v}={m.model_id}" for v, m in fallbacks])
    if primary is not None:
        result.set_primary(primary, f"{PAM_PRIMARY}={value}")


def _primary_layer(result: Resolution, variable: str, models: Mapping, environ: Mapping) -> None:
    value = env_value(environ, variable)
    model = _lookup(result, variable, value, models) if value else None
    if model is not None:
        result.set_primary(model, f"{variable}={value}")


def _force_layer(result: Resolution, models: Mapping, environ: Mapping) -> None:
    value = env_value(environ, FORCE)
    model = _lookup(result, FORCE, value, models) if value else None
    if model is not None:
        result.set_only(model, f"{FORCE}={value}")


def route_resolve(*, route: str, chain: tuple, models: Mapping, environ: Mapping) -> Resolution:
    """The chain ``route`` answers from once the environment's overrides are applied,
    lowest precedence first so that each layer overrides the ones before it."""
    result = Resolution(chain=tuple(chain))
    _toggle_layer(result, route, models, environ)
    if route == PAM_ROUTE:
        _pam_layer(result, models, environ)
    _primary_layer(result, f"DEFAULT_{route_env_prefix(route)}_MODEL", models, environ)
    _force_layer(result, models, environ)
    return result


def force_resolve(*, models: Mapping, environ: Mapping | None = None) -> Resolution | None:
    """What answers a request that names a model id rather than a route: FORCE_MODEL holds
    for it too (the other overrides concern routes). None when it is unset or cannot be obeyed."""
    result = _force_alone(models, os.environ if environ is None else environ)
    return result if result.chain else None


def _force_alone(models: Mapping, environ: Mapping) -> Resolution:
    result = Resolution(chain=())
    _force_layer(result, models, environ)
    return result


def overrides_apply(*, routes: dict, models: dict, environ: Mapping | None = None) -> dict:
    """The routes with the environment's overrides applied; ``override`` says which are in
    force (and which were ignored) so that admin and the admin API can show it."""
    environ = os.environ if environ is None else environ
    applied = {}
    for name, route in routes.items():
        result = route_resolve(route=name, chain=route.chain, models=models, environ=environ)
        _log_problems(result.problems)
        description = result.description
        applied[name] = route if description is None else replace(route, chain=result.chain, override=description)
    return applied


def overrides_problems(*, routes: dict, models: dict, environ: Mapping | None = None) -> list[Problem]:
    """Every setting that cannot be obeyed, each once (FORCE_MODEL concerns every route, and
    model-id requests even where no route exists)."""
    environ = os.environ if environ is None else environ
    problems: dict[Problem, None] = {}
    for name, route in routes.items():
        for problem in route_resolve(route=name, chain=route.chain, models=models, environ=environ).problems:
            problems.setdefault(problem)
    for problem in _force_alone(models, environ).problems:
        problems.setdefault(problem)
    return list(problems)


_logged: set[Problem] = set()


def _log_problems(problems: list[Problem]) -> None:
    for problem in problems:
        if problem not in _logged:
            _logged.add(problem)
            log.warning("environment override ignored: %s", problem.message)
