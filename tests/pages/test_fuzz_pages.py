"""The pages and their endpoints against arbitrary input (hypothesis), as a staff user: a
day, a route or model name in the path, the fault and chat bodies. Never a 5xx, never a
traceback; bad input is a 4xx. The schema-driven fuzzing (tests/test_fuzz.py) covers the
API; these are session endpoints outside its schema."""

import os
import string

import orjson
import pytest
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelhub.runtime import runtime

pytestmark = [pytest.mark.django_db]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~%", min_size=1, max_size=40)


@pytest.fixture
def fuzz_client(admin_client, hub):
    hub.route("pam", [hub.model("fuzz-page-m", "anthropic")])
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield admin_client
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def assert_handled(response):
    assert response.status_code < 500, response.content[:500]
    assert b"Traceback" not in response.content


def test_day_picker(fuzz_client):
    @FUZZ
    @given(day=TEXT)
    def run(day):
        response = fuzz_client.get("/dashboard/days/", {"day": day})
        assert_handled(response)
        assert response.status_code in (200, 400)

    run()


def test_drill_down_paths(fuzz_client):
    @FUZZ
    @given(route=SEGMENT, provider=SEGMENT, model=SEGMENT)
    def run(route, provider, model):
        assert_handled(fuzz_client.get(f"/dashboard/routes/{route}/"))
        assert_handled(fuzz_client.get(f"/dashboard/models/{provider}/{model}/"))
        assert_handled(fuzz_client.get("/playground/", {"conversation": route, "route": model}))

    run()


def test_fault_bodies(fuzz_client, sim):
    @FUZZ
    @given(
        body=JSON
        | st.fixed_dictionaries({"route": TEXT | st.just("pam"), "action": TEXT | st.sampled_from(["fail", "restore"])})
    )
    def run(body):
        response = fuzz_client.post("/playground/fault", orjson.dumps(body), content_type="application/json")
        assert_handled(response)
        sim.clear_faults()

    run()


def test_chat_bodies(fuzz_client):
    @FUZZ
    @given(
        body=JSON
        | st.fixed_dictionaries(
            {"message": TEXT, "route": TEXT | st.just("pam")},
            optional={"stream": st.just(False), "conversation_id": TEXT},
        )
    )
    def run(body):
        response = fuzz_client.post("/playground/chat", orjson.dumps(body), content_type="application/json")
        runtime().ledger.flush()
        assert_handled(response)

    run()
