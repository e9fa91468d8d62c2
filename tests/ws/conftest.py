import pytest

from tests.hubserver import hub_server, live  # noqa: F401 - fixtures


@pytest.fixture
def chat(live):
    """Route "pam" answered by "gpt" (OpenAI), route "hybrid" by "mini" (OpenAI)."""
    live.route("pam", [live.model("gpt", "openai", context_window=100_000, max_output_tokens=500)])
    live.route("hybrid", [live.model("mini", "openai", context_window=100_000, max_output_tokens=500)])
    return live
