"""The process-wide objects, made in one place and reached through ``runtime()``.

A web worker, a Celery worker and a management command each hold one Runtime: the
routing state (configuration snapshot and health board), the usage ledger, the live model
statistics, the shared version store, the per-key counters, the half-open trial gate and
the provider adapters.
Each part is built on first use, from the settings in force then; ``runtime_reset()``
drops them all (tests)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ledger import Ledger
    from .limits import LocalCounters, RedisCounters
    from .providers.registry import AdapterPool
    from .routing.state import RoutingState
    from .routing.trial import TrialGate
    from .routing.version import VersionStore
    from .stats import LiveStats


class Runtime:
    @cached_property
    def versions(self) -> VersionStore:
        from .routing.version import version_store_make

        return version_store_make()

    @cached_property
    def routing(self) -> RoutingState:
        from .routing.state import RoutingState

        return RoutingState(self.versions)

    @cached_property
    def ledger(self) -> Ledger:
        from .ledger import Ledger

        return Ledger()

    @cached_property
    def stats(self) -> LiveStats:
        from .stats import stats_make

        return stats_make()

    @cached_property
    def counters(self) -> LocalCounters | RedisCounters:
        from .limits import counters_make

        return counters_make()

    @cached_property
    def trials(self) -> TrialGate:
        from .routing.trial import trial_gate_make

        return trial_gate_make()

    @cached_property
    def adapters(self) -> AdapterPool:
        from .providers.registry import AdapterPool

        return AdapterPool()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    current = _runtime
    if current is None:
        current = _runtime = Runtime()
    return current


def runtime_reset() -> None:
    """Forget every process-wide object (the live statistics' figures and store included);
    the next ``runtime()`` builds them anew from the settings then in force."""
    global _runtime
    _runtime = None
