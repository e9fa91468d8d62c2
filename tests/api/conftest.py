import pytest


@pytest.fixture
def pam(hub):
    """Route "pam" answered by one OpenAI model, "only" (100 output tokens at most)."""
    model = hub.model("only", "openai", max_output_tokens=100)
    hub.route("pam", [model])
    return hub
