"""Overrides are absolute: FORCE_MODEL answers model-id requests too, and a bad override
stops the web server's and the worker's start-up (unless MODELHUB_START_DEGRADED)."""

import os
import subprocess

import pytest
from asgiref.testing import ApplicationCommunicator

from modelhub.routing.router import route_lookup
from modelhub.routing.snapshot import snapshot_build
from tests.e2e.conftest import ROOT, UVICORN, database_url_of_tests, free_port, hub_server_start, needs_postgres
from tests.factories import AIModelFactory, RouteFactory

BAD_TOGGLES = {"GATE_USE_A": "true", "GATE_USE_B": "true"}  # two toggles true for route "gate"
BAD_TOGGLES_MESSAGE = "(modelhub.E003) Environment override: route 'gate' has several model toggles true"


@pytest.fixture
def gate_route(transactional_db):
    """A route whose toggles BAD_TOGGLES sets wrong, committed so other threads and
    processes see it."""
    return RouteFactory(name="gate", chain=[AIModelFactory()])


# FORCE_MODEL and model-id requests


def test_force_model_answers_a_request_naming_another_model_id(hub, sim, monkeypatch):
    hub.route("pam", [hub.model("other-m", "openai")])
    hub.model("forced-m", "anthropic")
    monkeypatch.setenv("FORCE_MODEL", "forced-m")
    response = hub.chat({"message": "Hi", "model": "other-m"})
    body = response.json()
    assert response.status_code == 200, body
    assert (body["model"], body["route"], body["source"]) == ("forced-m", "other-m", "primary")
    assert [call.model for call in sim.calls] == ["forced-m"]


def test_without_force_model_a_model_id_request_is_answered_by_that_model(hub, sim):
    hub.model("other-m", "openai")
    hub.model("forced-m", "anthropic")
    body = hub.chat({"message": "Hi", "model": "other-m"}).json()
    assert body["model"] == "other-m"


@pytest.mark.django_db
def test_a_model_id_route_says_force_model_is_in_force(monkeypatch):
    forced, other = AIModelFactory(), AIModelFactory()
    monkeypatch.setenv("FORCE_MODEL", forced.model_id)
    route = route_lookup(snapshot_build(version=1), other.model_id)
    assert [m.model_id for m in route.chain] == [forced.model_id]
    assert route.override == f"FORCE_MODEL={forced.model_id} (the only model, every route)"


# The web server's start-up (ASGI lifespan)


async def lifespan_events(*events):
    from pam.asgi import application

    app = ApplicationCommunicator(application, {"type": "lifespan", "asgi": {"version": "3.0"}})
    answers = []
    for event in events:
        await app.send_input({"type": event})
        answers.append(await app.receive_output(30))
        if answers[-1]["type"].endswith("failed"):
            break
    await app.wait(5)
    return answers


async def test_lifespan_start_up_fails_with_the_system_check_message(gate_route, monkeypatch):
    for name, value in BAD_TOGGLES.items():
        monkeypatch.setenv(name, value)
    [answer] = await lifespan_events("lifespan.startup", "lifespan.shutdown")
    assert answer["type"] == "lifespan.startup.failed"
    assert BAD_TOGGLES_MESSAGE in answer["message"]
    assert "MODELHUB_START_DEGRADED=true" in answer["message"]


async def test_lifespan_starts_degraded_when_told_to(gate_route, monkeypatch, settings, caplog):
    settings.MODELHUB = {**settings.MODELHUB, "START_DEGRADED": True}
    for name, value in BAD_TOGGLES.items():
        monkeypatch.setenv(name, value)
    answers = await lifespan_events("lifespan.startup", "lifespan.shutdown")
    assert [a["type"] for a in answers] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert any("starts degraded" in r.message and BAD_TOGGLES_MESSAGE in r.message for r in caplog.records)


async def test_lifespan_starts_on_a_valid_configuration(gate_route):
    answers = await lifespan_events("lifespan.startup", "lifespan.shutdown")
    assert [a["type"] for a in answers] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def uvicorn_run_until_exit(**env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATABASE_URL": database_url_of_tests(), "MODELHUB_LOG_LEVEL": "WARNING", **env}
    command = [str(UVICORN), "pam.asgi:application", "--port", str(free_port()), "--log-level", "warning"]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


@needs_postgres
def test_uvicorn_refuses_to_start_on_a_bad_toggle(gate_route):
    finished = uvicorn_run_until_exit(**BAD_TOGGLES)
    assert finished.returncode != 0
    assert BAD_TOGGLES_MESSAGE in finished.stderr
    assert "Application startup failed. Exiting." in finished.stderr


@needs_postgres
def test_uvicorn_starts_degraded_on_a_bad_toggle_when_told_to(gate_route):
    server = hub_server_start(**BAD_TOGGLES, MODELHUB_START_DEGRADED="true")
    try:
        server.wait_ready()
        assert server.request("GET", "/api/v1/health")[0] in (200, 503)
    finally:
        server.stop()


# The Celery worker's start-up


def test_the_worker_refuses_to_start_on_a_bad_toggle(gate_route, monkeypatch, caplog):
    from pam.celery import overrides_gate

    for name, value in BAD_TOGGLES.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        overrides_gate(sender=None)
    assert exit_.value.code == 1
    assert any(BAD_TOGGLES_MESSAGE in r.message and "Celery worker does not start" in r.message for r in caplog.records)


def test_the_worker_starts_degraded_when_told_to(gate_route, monkeypatch, settings):
    from pam.celery import overrides_gate

    settings.MODELHUB = {**settings.MODELHUB, "START_DEGRADED": True}
    for name, value in BAD_TOGGLES.items():
        monkeypatch.setenv(name, value)
    overrides_gate(sender=None)  # no SystemExit
