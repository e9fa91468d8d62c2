"""Discovery: each provider's listing, through its SDK, against the registry."""

import pytest

from modelhub import tasks
from modelhub.discovery import models_discover
from modelhub.models import AIModel

pytestmark = pytest.mark.django_db


def test_unknown_listed_models_are_added_as_disabled_candidates(hub, sim):
    known = hub.model("gpt-4o", "openai")

    models_discover()

    candidates = AIModel.objects.filter(provider=hub.providers["openai"], status="candidate")
    assert sorted(candidates.values_list("model_id", flat=True)) == ["gpt-4o-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"]
    assert all(not m.enabled and m.discovered_at for m in candidates)
    known.refresh_from_db()
    assert (known.status, known.enabled, known.missing_since) == ("active", True, None)


def test_every_provider_kind_is_listed(hub, sim):
    reports = {r["provider"]: r for r in tasks.discover_models.apply().get()}

    assert {name: len(r["added"]) for name, r in reports.items() if name.startswith("sim-")} == {
        "sim-anthropic": 5,
        "sim-openai": 5,
        "sim-google": 5,
        "sim-openai-compatible": 4,
    }
    gemini = AIModel.objects.get(provider=hub.providers["google"], model_id="gemini-2.5-flash")
    assert gemini.max_tokens_param == "maxOutputTokens"


def test_model_no_longer_listed_is_flagged_not_disabled(hub, sim):
    gone = hub.model("claude-opus-4-20250514", "anthropic")
    sim.listed_models["anthropic"].remove("claude-opus-4-20250514")

    [report] = [r for r in models_discover() if r.provider == "sim-anthropic"]

    gone.refresh_from_db()
    assert report.missing == ["claude-opus-4-20250514"]
    assert gone.missing_since is not None and gone.enabled and gone.status == "active"

    sim.listed_models["anthropic"].append("claude-opus-4-20250514")
    models_discover()
    gone.refresh_from_db()
    assert gone.missing_since is None


def test_failed_listing_flags_nothing(hub, sim):
    known = hub.model("gpt-4o", "openai")
    sim.valid_keys = {"another-key"}

    [report] = [r for r in models_discover() if r.provider == "sim-openai"]

    known.refresh_from_db()
    assert report.error.startswith("auth") and known.missing_since is None
    assert not AIModel.objects.filter(status="candidate").exists()
