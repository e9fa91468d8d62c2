"""HTTP control plane (/_sim/...) for processes that do not share the simulator's memory."""

from __future__ import annotations

from dataclasses import asdict

from .asgi import parse_json, read_body, send_json


def _set_fault(sim, body):
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return 400, {"error": 'expected a JSON object with "model" and Fault fields'}
    fields = {k: v for k, v in body.items() if k != "model"}
    try:
        fault = sim.set_fault(body["model"], **fields)
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 200, {"model": body["model"], **asdict(fault)}


def _set_pace(sim, body):
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return 400, {"error": 'expected a JSON object with "model", "chunks" and "interval_ms"'}
    try:
        pace = sim.set_pace(body["model"], **{k: v for k, v in body.items() if k != "model"})
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 200, {"model": body["model"], **asdict(pace)}


def _clear_paces(sim, body):
    sim.clear_paces(body.get("model") if isinstance(body, dict) else None)
    return 200, {"paces": {}}


def _list_paces(sim, body):
    return 200, {model: asdict(pace) for model, pace in sim.paces.items()}


def _stats(sim, body):
    statuses = sim.statuses
    return 200, {"calls": sum(statuses.values()), "statuses": {str(k): v for k, v in statuses.items()}}


def _clear_faults(sim, body):
    sim.clear_faults(body.get("model") if isinstance(body, dict) else None)
    return 200, {"faults": {}}


def _list_faults(sim, body):
    return 200, {model: asdict(fault) for model, fault in sim.faults.items()}


def _reset(sim, body):
    sim.reset()
    return 200, {"status": "reset"}


def _calls(sim, body):
    return 200, [{k: v for k, v in asdict(call).items() if k != "body"} for call in sim.calls]


def _health(sim, body):
    return 200, {"status": "ok"}


ACTIONS = {
    ("POST", "/_sim/faults"): _set_fault,
    ("GET", "/_sim/faults"): _list_faults,
    ("DELETE", "/_sim/faults"): _clear_faults,
    ("POST", "/_sim/pace"): _set_pace,
    ("GET", "/_sim/pace"): _list_paces,
    ("DELETE", "/_sim/pace"): _clear_paces,
    ("GET", "/_sim/stats"): _stats,
    ("POST", "/_sim/reset"): _reset,
    ("GET", "/_sim/calls"): _calls,
    ("GET", "/_sim/health"): _health,
}


async def handle(sim, scope, receive, send) -> None:
    body = parse_json(await read_body(receive))
    action = ACTIONS.get((scope["method"], scope["path"]))
    if action is None:
        return await send_not_found(scope, send)
    status, payload = action(sim, body)
    await send_json(send, status, payload)


async def send_not_found(scope, send) -> None:
    await send_json(send, 404, {"error": {"message": f"Unknown path {scope['path']}", "type": "not_found"}})
