"""Rollouts in the console: a discovered candidate sent into a shadow rollout from the AI
models' list, the form that starts it, settings changed while it runs, and the actions;
each through the audited services and obeyed by the next request."""

import pytest

from modelhub.admin.registry import AIModelAdmin
from modelhub.admin.rollouts import start_shadow_rollout
from modelhub.models import ConfigChange, Rollout, Route
from tests.rollouts.conftest import ask, fresh, on_arm, start

ROLLOUTS = "/admin/modelhub/rollout/"
SETTINGS = {
    "step_weights": "[1, 5, 10, 25, 50, 100]",
    "min_requests": "50",
    "max_error_rate": "0.05",
    "max_latency_ratio": "1.5",
    "max_cost_ratio": "1.5",
    "shadow_percent": "10",
    "shadow_budget_usd": "1",
}


@pytest.fixture
def with_the_action(monkeypatch):
    """The AI models' admin with the action added, as the report's one-line diff adds it."""
    monkeypatch.setattr(AIModelAdmin, "actions", (*AIModelAdmin.actions, start_shadow_rollout))


def act(admin_client, action, *rollouts):
    response = admin_client.post(ROLLOUTS, {"action": action, "_selected_action": [r.pk for r in rollouts]})
    assert response.status_code == 302
    return [fresh(r) for r in rollouts]


def test_a_discovered_candidate_goes_into_a_shadow_rollout_from_the_models_list(
    hub, admin_client, models, with_the_action
):
    candidate = models[2]
    candidate.enabled, candidate.status = False, "candidate"
    candidate.save()

    response = admin_client.post(
        "/admin/modelhub/aimodel/", {"action": "start_shadow_rollout", "_selected_action": [candidate.pk]}
    )
    assert response.status_code == 302 and response["Location"] == f"{ROLLOUTS}add/?candidate={candidate.pk}"
    form = admin_client.get(response["Location"])
    assert form.status_code == 200 and f'<option value="{candidate.pk}" selected>' in form.content.decode()

    pam = Route.objects.get(name="pam")
    saved = admin_client.post(
        f"{ROLLOUTS}add/", {"route": pam.pk, "candidate": candidate.pk, "phase": "shadow", **SETTINGS}
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    rollout = Rollout.objects.get()
    assert (rollout.route, rollout.candidate, rollout.phase, rollout.created_by) == (pam, candidate, "shadow", "admin")
    candidate.refresh_from_db()
    assert candidate.enabled
    change = ConfigChange.objects.get(action="rollout_start")
    assert (change.source, change.actor, change.route) == ("admin", "admin", "pam")


def test_the_action_takes_one_model(hub, admin_client, models, with_the_action):
    response = admin_client.post(
        "/admin/modelhub/aimodel/",
        {"action": "start_shadow_rollout", "_selected_action": [m.pk for m in models]},
        follow=True,
    )
    assert "Select one model" in response.content.decode()


def test_the_form_refuses_a_second_active_rollout_in_words(hub, admin_client, models):
    start(models, phase="shadow")
    pam = Route.objects.get(name="pam")

    response = admin_client.post(
        f"{ROLLOUTS}add/", {"route": pam.pk, "candidate": models[1].pk, "phase": "canary", **SETTINGS}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "has an active rollout already" in page and "rollout_one_active_per_route" not in page
    assert Rollout.objects.count() == 1


def test_settings_changed_in_admin_are_audited(hub, admin_client, models):
    rollout = start(models, step_weights=[10, 100])

    response = admin_client.post(f"{ROLLOUTS}{rollout.pk}/change/", {**SETTINGS, "step_weights": "[20, 100]"})

    assert response.status_code == 302
    assert (fresh(rollout).step_weights, fresh(rollout).weight) == ([20, 100], 20.0)
    change = ConfigChange.objects.get(action="rollout_change")
    assert change.after == {"step_weights": [20, 100], "weight": 20.0}


def test_actions_are_obeyed_by_the_next_request(hub, admin_client, models):
    rollout = start(models, step_weights=[100], min_requests=1000)
    (sticky,) = on_arm(rollout, canary=True)
    assert ask(hub, conversation_id=sticky)["routing"]["arm"] == "canary"

    (paused,) = act(admin_client, "pause", rollout)
    assert paused.phase == "paused" and ask(hub, conversation_id=sticky)["routing"]["arm"] == "stable"
    (resumed,) = act(admin_client, "resume", rollout)
    assert resumed.phase == "canary" and ask(hub, conversation_id=sticky)["routing"]["arm"] == "canary"
    (rolled_back,) = act(admin_client, "rollback", rollout)
    assert rolled_back.phase == "rolled_back" and ask(hub, conversation_id=sticky)["model"] == "stable-m"

    page = admin_client.get(f"{ROLLOUTS}{rollout.pk}/change/").content.decode()
    assert 'name="min_requests"' not in page  # ended: history, read-only
    response = admin_client.post(ROLLOUTS, {"action": "pause", "_selected_action": [rollout.pk]}, follow=True)
    assert "cannot be paused" in response.content.decode()


def test_advance_and_promote_from_admin(hub, admin_client, models):
    rollout = start(models, phase="shadow")

    (advanced,) = act(admin_client, "advance", rollout)
    assert (advanced.phase, advanced.step, advanced.weight) == ("canary", 0, 1.0)
    (promoted,) = act(admin_client, "promote", rollout)
    assert promoted.phase == "promoted" and ask(hub)["model"] == "cand-m"


def test_the_list_and_the_page_show_the_analysis(hub, admin_client, models):
    rollout = start(models, step_weights=[100], min_requests=3)
    ask(hub)

    listing = admin_client.get(ROLLOUTS).content.decode()
    page = admin_client.get(f"{ROLLOUTS}{rollout.pk}/change/").content.decode()

    assert "cand-m" in listing and "canary" in listing
    assert "hold: 1 of the 3 canary requests at step 1 (100%) needed." in page
    assert admin_client.get(f"{ROLLOUTS}{rollout.pk}/delete/").status_code == 403
