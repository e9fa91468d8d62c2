"""A route "pam" whose stable chain is stable-m (OpenAI) then spare-m (Google), and a
candidate, cand-m (Anthropic), of the same prices; rollouts are started through the
service as an operator would. The rollout work that requests queue (counting, judging,
shadow copies) is run by the test, inside its transaction, after each request."""

from __future__ import annotations

import pytest

from modelhub import rollouts
from modelhub.audit import Actor
from modelhub.models import AIModel, ConfigChange, Rollout, Route
from modelhub.routing.strategies import canary_bucket
from pam.celery import app as celery_app

OPERATOR = Actor("ops", ConfigChange.Source.API)


@pytest.fixture(autouse=True)
def _rollout_work_in_the_test(settings, monkeypatch):
    """Rollout work runs when the test says, and its Celery task (the shadow copy) at once,
    as in the embedded default, also where REDIS_URL would send it to a broker."""
    settings.MODELHUB = {**settings.MODELHUB, "ROLLOUT_BACKGROUND": False}
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)


def chain_of(hub) -> tuple[AIModel, AIModel, AIModel]:
    stable, spare = hub.model("stable-m", "openai"), hub.model("spare-m", "google")
    candidate = hub.model("cand-m", "anthropic")
    hub.route("pam", [stable, spare])
    return stable, spare, candidate


@pytest.fixture
def models(hub):
    return chain_of(hub)


def start(models, **settings) -> Rollout:
    """A rollout of cand-m on pam; starts in the canary phase unless told otherwise."""
    rollout = Rollout(route=Route.objects.get(name="pam"), candidate=models[2], **{"phase": "canary", **settings})
    return rollouts.rollout_start(rollout=rollout, by=OPERATOR)


def ask(hub, key=None, **body) -> dict:
    """One chat request that must be answered; then the rollout work it queued."""
    response = hub.chat({"message": "Hi", **body}, key=key)
    assert response.status_code == 200, response.content
    rollouts.rollout_work().run_pending()
    return response.json()


def on_arm(rollout: Rollout, canary: bool, count: int = 1) -> list[str]:
    """Conversation ids whose callers are on (or off) the rollout's canary arm now."""
    found, n = [], 0
    while len(found) < count:
        sticky, n = f"conversation-{n}", n + 1
        if (canary_bucket(rollout.pk, sticky) < rollout.weight) == canary:
            found.append(sticky)
    return found


def fresh(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_related("route", "candidate").get(pk=rollout.pk)
