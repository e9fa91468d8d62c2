"""The playground: its chat endpoint is the native chat on a staff user's admin session
(CSRF checked) under the user's playground key, through the real router and the simulated
upstream; its fault button fails the primary on the simulator; a reload shows the
conversation's earlier turns."""

import http.client

import orjson
import pytest
from django.test import Client

from modelhub.models import ApiKey, ConfigChange, Conversation, ConversationMessage, ModelHealth, UsageRecord
from modelhub.pages.simulator import _address
from modelhub.runtime import runtime
from modelhub.services import api_key_create
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def pam(hub):
    hub.route("pam", [hub.model("primary-m", "anthropic"), hub.model("fallback-m", "google")])
    return hub


def chat(client, **body):
    response = client.post("/playground/chat", orjson.dumps({"message": "Hi", **body}), content_type="application/json")
    runtime().ledger.flush()
    return response


def session_events(live, user, body) -> tuple[str, list[tuple[str, dict]]]:
    """POST /playground/chat on the real server with ``user``'s admin session (and a CSRF
    token as a browser sends it): the content type and the server-sent events."""
    client = Client()
    client.force_login(user)
    token = "t" * 32
    headers = {
        "Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={token}",
        "X-CSRFToken": token,
        "Content-Type": "application/json",
    }
    connection = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=10)
    connection.request("POST", "/playground/chat", orjson.dumps(body), headers)
    response = connection.getresponse()
    raw = response.read().decode()
    connection.close()
    found = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields["event"], orjson.loads(fields["data"])))
    return response.getheader("Content-Type"), found


def test_chat_runs_the_native_path_under_the_users_playground_key(admin_client, admin_user, pam):
    response = chat(admin_client)

    assert response.status_code == 200
    answer = response.json()
    assert (answer["model"], answer["source"], answer["routing"]["order"]) == (
        "primary-m",
        "primary",
        ["primary-m", "fallback-m"],
    )
    key = ApiKey.objects.get(user=admin_user)
    assert key.name == "playground: admin"
    assert list(UsageRecord.objects.values_list("api_key", "request_id")) == [(key.pk, answer["request_id"])]


def test_the_playground_key_is_made_once_and_audited(admin_client, admin_user, pam):
    chat(admin_client)
    chat(admin_client)

    assert ApiKey.objects.filter(user=admin_user).count() == 1
    made = ConfigChange.objects.get(target_type="apikey", action="add")
    assert made.actor == "admin" and "key_hash" not in orjson.dumps(made.after).decode()


@pytest.mark.django_db(transaction=True)
def test_streamed_answer_ends_with_its_explanation(live, django_user_model):
    live.route("pam", [live.model("primary-m", "anthropic"), live.model("fallback-m", "google")])
    staff = django_user_model.objects.create_user("ops-stream", is_staff=True)

    content_type, found = session_events(live, staff, {"message": "Hi", "stream": True})

    assert content_type == "text/event-stream"
    assert [name for name, _ in found[:-1]] == ["delta"] * (len(found) - 1)
    name, done = found[-1]
    assert name == "done" and (done["model"], done["finish_reason"]) == ("primary-m", "stop")
    assert "".join(data["content"] for _, data in found[:-1]) == "Simulated reply from primary-m."
    assert done["routing"]["strategy"] == "priority" and done["attempts"][0]["outcome"] == "ok"


def test_failing_the_primary_on_the_simulator_shows_the_failover(admin_client, pam, sim):
    response = admin_client.post(
        "/playground/fault", {"route": "pam", "action": "fail"}, content_type="application/json"
    )

    assert response.status_code == 200 and response.json()["model"] == "primary-m"
    assert sim.faults["primary-m"].status == 529
    answer = chat(admin_client).json()
    assert (answer["model"], answer["source"]) == ("fallback-m", "fallback_1")
    assert [(a["model"], a["outcome"]) for a in answer["attempts"]] == [
        ("primary-m", "overloaded"),
        ("fallback-m", "ok"),
    ]
    after = chat(admin_client).json()  # the primary now cools down: passed over, and said why
    assert [s["model"] for s in after["routing"]["skipped"]] == ["primary-m"]
    assert after["routing"]["skipped"][0]["reason"].startswith("cooling down until")


def test_restoring_the_primary_clears_the_fault_and_its_cooldown(admin_client, pam, sim):
    admin_client.post("/playground/fault", {"route": "pam", "action": "fail"}, content_type="application/json")
    chat(admin_client)
    assert ModelHealth.objects.get(model__model_id="primary-m").state == "cooling_down"

    response = admin_client.post(
        "/playground/fault", {"route": "pam", "action": "restore"}, content_type="application/json"
    )

    assert response.status_code == 200
    assert "primary-m" not in sim.faults
    assert ModelHealth.objects.get(model__model_id="primary-m").state == "healthy"
    assert chat(admin_client).json()["model"] == "primary-m"


def test_fault_is_refused_where_the_simulator_is_not_the_upstream(admin_client, pam):
    real = pam.model("real-m", "openai")
    real.provider.base_url = "https://api.openai.com/v1"
    real.provider.save()
    pam.route("real", [real])

    response = admin_client.post(
        "/playground/fault", {"route": "real", "action": "fail"}, content_type="application/json"
    )

    assert response.status_code == 409
    assert "not served by the built-in simulator" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, status",
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"route": "pam"}', 400),
        (b'{"route": "pam", "action": "explode"}', 400),
        (b'{"route": 7, "action": "fail"}', 400),
        (b'{"route": "nowhere", "action": "fail"}', 404),
    ],
)
def test_a_bad_fault_request_is_a_clear_4xx(admin_client, pam, body, status):
    response = admin_client.post("/playground/fault", body, content_type="application/json")

    assert response.status_code == status
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "url, simulated",
    [
        ("http://127.0.0.1:8900/anthropic", True),
        ("http://localhost:8900/openai/v1/", True),
        ("http://[::1]:8900/gemini", True),
        ("https://127.0.0.1:8900/anthropic", False),
        ("http://10.0.0.7:8900/anthropic", False),
        ("http://api.example.com:8900/anthropic", False),
        ("http://127.0.0.1:8900/internal/admin", False),
        ("http://127.0.0.1/anthropic", False),
        ("http://127.0.0.1:99999/anthropic", False),
        ("", False),
    ],
)
def test_only_a_simulator_on_this_machine_is_ever_called(url, simulated):
    assert (_address(url) is not None) == simulated


def test_the_page_offers_the_fault_button_only_where_the_simulator_answers(admin_client, pam):
    real = pam.model("real-m", "openai")
    real.provider.base_url = "https://api.openai.com/v1"
    real.provider.save()
    pam.route("real", [real])

    targets = admin_client.get("/playground/").context["config"]["targets"]

    assert targets["pam"] == {"primary": "primary-m", "simulated": True}
    assert targets["real"] == {"primary": "real-m", "simulated": False}
    assert targets["fallback-m"]["simulated"] is True  # a model picked directly is its own primary


def test_csrf_is_checked(admin_user, pam):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    refused = chat(client)
    client.get("/playground/")
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/playground/chat", b'{"message": "Hi"}', content_type="application/json", headers={"X-CSRFToken": token}
    )

    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    assert accepted.status_code == 200


def test_a_revoked_playground_key_is_refused_with_a_clear_message(admin_client, admin_user, pam):
    chat(admin_client)
    ApiKey.objects.filter(user=admin_user).update(is_active=False)
    from modelhub.routing.version import config_version_bump

    config_version_bump()

    response = chat(admin_client)

    assert response.status_code == 403
    assert "playground key is revoked" in response.json()["error"]["message"]


def test_bad_chat_input_is_400(admin_client, pam):
    response = admin_client.post("/playground/chat", b'{"route": "pam"}', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "message"


def test_a_reload_shows_the_earlier_turns_of_the_users_conversation(admin_client, admin_user, pam, django_user_model):
    chat(admin_client)  # makes the playground key
    key = ApiKey.objects.get(user=admin_user)
    mine = Conversation.objects.create(conversation_id="pg-1", api_key=key, route="pam")
    ConversationMessage.objects.create(conversation=mine, role="user", content="What is PAM?")
    ConversationMessage.objects.create(conversation=mine, role="assistant", content="A hub.", model="primary-m")
    other = api_key_create(name="other", user=django_user_model.objects.create_user("someone", is_staff=True))[0]
    theirs = Conversation.objects.create(conversation_id="pg-2", api_key=other)
    ConversationMessage.objects.create(conversation=theirs, role="user", content="Secret question")

    html = admin_client.get("/playground/?conversation=pg-1").content.decode()
    foreign = admin_client.get("/playground/?conversation=pg-2").content.decode()

    assert html.index("What is PAM?") < html.index("A hub.")
    assert '"conversationId": "pg-1"' in html
    assert "Secret question" not in foreign


def test_conversation_memory_across_playground_turns(admin_client, pam, sim):
    first = chat(admin_client, message="My name is Ada.", conversation_id="pg-memory")
    second = chat(admin_client, message="What is my name?", conversation_id="pg-memory")

    assert first.status_code == second.status_code == 200
    sent = sim.calls[-1].body["messages"]
    assert [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in sent][:2] == [
        "My name is Ada.",
        "Simulated reply from primary-m.",
    ]
    turns = admin_client.get("/playground/?conversation=pg-memory").context["conversation"]["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
