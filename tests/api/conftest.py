import pytest

from tests.hubtools import KEY_ENV, Hub


@pytest.fixture
def hub(db, sim, simulator, client, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    return Hub(simulator, client)


@pytest.fixture
def pam(hub):
    """Route "pam" answered by one OpenAI model, "only" (100 output tokens at most)."""
    model = hub.model("only", "openai", max_output_tokens=100)
    hub.route("pam", [model])
    return hub
