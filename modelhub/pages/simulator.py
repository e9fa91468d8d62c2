"""The built-in simulated upstream as the playground reaches it: whether a model's provider
is the simulator, and the simulator's fault control (``POST`` / ``DELETE /_sim/faults``,
``modelhub/simulator/control.py``).

A provider's base URL is admin-editable configuration, so this is careful about where it
sends anything: only to a simulator on this machine (http on a loopback address, at one of
the simulator's own base paths, answering ``GET /_sim/health``), only to its control paths,
never following a redirect, never with a provider's key."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from ..providers.base import ModelSpec
from ..simulator.server import BASE_PATHS

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TIMEOUT_SECONDS = 2.0
FAIL_STATUS = 529  # overloaded: the router fails over and cools the model down


class SimulatorError(Exception):
    pass


def _address(base_url: str | None) -> tuple[str, int] | None:
    """(host, port) of a simulator base URL on this machine, else None."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or port is None:
        return None
    if parts.path.rstrip("/") not in BASE_PATHS.values():
        return None
    return parts.hostname, port


def _call(address: tuple[str, int], method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*address, timeout=TIMEOUT_SECONDS)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"the simulator at {address[0]}:{address[1]} did not answer: {exc}") from exc
    finally:
        connection.close()


def simulator_of(model: ModelSpec, *, known: dict | None = None) -> tuple[str, int] | None:
    """Where the simulator serving ``model`` listens, or None when its provider is not the
    simulator on this machine. ``known``: answers already found, by address (one page asks
    about every route's primary, usually all on one simulator)."""
    address = _address(model.provider.base_url)
    if address is None:
        return None
    known = {} if known is None else known
    if address not in known:
        try:
            known[address] = _call(address, "GET", "/_sim/health") == (200, {"status": "ok"})
        except SimulatorError:
            known[address] = False
    return address if known[address] else None


def fault_set(model: ModelSpec) -> dict:
    """Make the simulator fail every call of ``model`` (status 529) until cleared."""
    return _control(model, "POST", {"model": model.model_id, "status": FAIL_STATUS})


def fault_clear(model: ModelSpec) -> dict:
    return _control(model, "DELETE", {"model": model.model_id})


def _control(model: ModelSpec, method: str, body: dict) -> dict:
    address = simulator_of(model)
    if address is None:
        raise SimulatorError(f"{model.model_id} is not served by the built-in simulator on this machine.")
    status, answer = _call(address, method, "/_sim/faults", body)
    if status != 200:
        raise SimulatorError(f"the simulator refused the fault: {answer}")
    return answer
