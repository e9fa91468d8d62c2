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
