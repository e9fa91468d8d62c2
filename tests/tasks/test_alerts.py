"""Cost alerts: the PAM hybrid document's rules, each firing once per day."""

import json
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from modelhub import tasks
from modelhub.alerts import alerts_evaluate, webhook_post
from modelhub.costs import today
from modelhub.models import AIModel, Alert, AlertRule, DailyCost
from tests.providers.test_transport import LOOPBACK, PUBLIC, ScriptedResolver, dns, strict  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
DAILY, AVG, SHARE, STRONG = (
    "Daily cost over $5",
    "Average cost per request over $0.001",
    "Route reasoning over 10% of requests",
    "Complexity routes: over 10% to the complex route",
)


@pytest.fixture(autouse=True)
def _alert_inbox(settings):
    settings.MODELHUB = {**settings.MODELHUB, "ALERT_EMAILS": ["ops@example.com"]}


@pytest.fixture(autouse=True)
def _no_retirements():
    """The cost rules alone: the seeded catalog's retired models would raise lifecycle
    alerts too (those are tests/test_lifecycle.py's)."""
    AIModel.objects.update(retires_on=None)


def _day(route="pam", requests=100, cost="0.01", day=None, **fields):
    return DailyCost.objects.create(
        day=day or today(),
        route=route,
        provider="p",
        model="m",
        requests=requests,
        attempts=requests,
        cost_usd=Decimal(cost),
        **fields,
    )


def _fired():
    return sorted(Alert.objects.values_list("rule__name", flat=True))


def test_default_rules_are_the_pam_hybrid_documents():
    rules = {r.name: (r.metric, r.threshold, r.scope, r.target) for r in AlertRule.objects.all()}
    assert rules == {
        DAILY: ("daily_cost", Decimal("5"), "all", ""),
        AVG: ("avg_cost_per_request", Decimal("0.001"), "all", ""),
        SHARE: ("request_share", Decimal("0.1"), "route", "reasoning"),
        STRONG: ("strong_share", Decimal("0.1"), "all", ""),
    }


def test_quiet_day_fires_nothing():
    _day(requests=1000, cost="0.28")  # the document's target: $0.00028 per query
    _day(route="reasoning", requests=50, cost="0.01")

    assert alerts_evaluate() == []


def test_daily_cost_over_5_fires_once_per_day():
    _day(requests=10_000, cost="5.000000000001")

    alerts_evaluate()
    alerts_evaluate()
    tasks.evaluate_alerts.apply().get()

    assert _fired() == [DAILY]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com"]
    assert "Daily cost over $5" in mail.outbox[0].subject
    alert = Alert.objects.get()
    assert alert.emailed and alert.value == Decimal("5.000000000001") and alert.period == today()


def test_average_cost_per_request_over_a_tenth_of_a_cent_fires_once():
    _day(requests=100, cost="0.2")  # $0.002 per request

    alerts_evaluate()
    alerts_evaluate()

    assert _fired() == [AVG]
    assert "$0.002000" in Alert.objects.get().message


def test_route_share_over_10_percent_fires_once():
    _day(requests=80, cost="0.01")
    _day(route="reasoning", requests=20, cost="0.01")  # 20%

    alerts_evaluate()
    alerts_evaluate()

    assert _fired() == [SHARE]
    assert "20.0%" in Alert.objects.get().message


def test_model_share_rule_counts_requests_of_that_model():
    AlertRule.objects.create(
        name="m-big share", metric="request_share", threshold=Decimal("0.5"), scope="model", target="m-big"
    )
    _day(requests=40, cost="0")
    DailyCost.objects.create(day=today(), route="pam", provider="p", model="m-big", requests=60, attempts=60)

    assert [a.rule.name for a in alerts_evaluate()] == ["m-big share"]


def test_averages_and_shares_wait_for_enough_requests():
    _day(route="reasoning", requests=3, cost="0.9")  # 100% share, $0.30 each, but 3 requests

    assert alerts_evaluate() == []


def test_probes_count_in_cost_but_not_in_requests():
    _day(requests=100, cost="0.05")
    _day(route="", requests=10, cost="0.07", is_probe=True)

    # with the probes' cost and requests the average would be over $0.001; without, $0.0005
    assert alerts_evaluate() == []


def test_a_new_day_is_a_new_period():
    _day(requests=10, cost="6", day=today() - timedelta(days=1))
    _day(requests=10, cost="6")

    alerts_evaluate(day=today() - timedelta(days=1))
    alerts_evaluate()

    assert Alert.objects.filter(rule__name=DAILY).count() == 2


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Content-Type"], json.loads(body)))
        if self.path == "/moved":
            self.send_response(307)
            self.send_header("Location", "/hook")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()
    server.server_close()


def test_alert_is_posted_to_the_rules_webhook(settings, webhook_receiver):
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": True}
    url, received = webhook_receiver
    AlertRule.objects.filter(name=DAILY).update(webhook_url=url)
    _day(requests=10, cost="7")

    alerts_evaluate()

    [(content_type, payload)] = received
    assert content_type == "application/json"
    assert (payload["rule"], Decimal(payload["value"]), payload["period"]) == (DAILY, 7, str(today()))
    assert Alert.objects.get().webhook_status == "HTTP 204"


def test_webhook_to_an_internal_address_is_refused(settings, webhook_receiver):
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": False, "BASE_URL_ALLOWLIST": []}
    url, received = webhook_receiver
    rule = AlertRule.objects.get(name=DAILY)
    rule.webhook_url = url.replace("127.0.0.1", "127.1")

    with pytest.raises(ValidationError) as error:
        rule.full_clean()

    assert "webhook_url" in error.value.message_dict
    assert webhook_post(url=url, payload={}).startswith("refused")
    assert received == []


def test_webhook_name_rebound_to_loopback_after_the_check_is_refused_at_connect_time(strict, dns, webhook_receiver):
    url, received = webhook_receiver
    dns(PUBLIC, LOOPBACK)  # the check sees a public address, the connection a loopback one

    status = webhook_post(url=url.replace("http://127.0.0.1", "https://hooks.rebind.example"), payload={})

    assert status == "refused: hooks.rebind.example resolves to 127.0.0.1, a private, loopback or reserved address"
    assert ScriptedResolver.lookups == ["hooks.rebind.example", "hooks.rebind.example"]
    assert received == []


def test_webhook_to_an_allowlisted_name_reaches_its_private_address(strict, settings, dns, webhook_receiver):
    settings.MODELHUB = {**settings.MODELHUB, "BASE_URL_ALLOWLIST": ["hooks.internal"]}
    url, received = webhook_receiver
    dns(LOOPBACK)

    status = webhook_post(url=url.replace("127.0.0.1", "hooks.internal"), payload={"rule": "r"})

    assert (status, received) == ("HTTP 204", [("application/json", {"rule": "r"})])


def test_webhook_does_not_follow_a_redirect(settings, webhook_receiver):
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": True}
    url, received = webhook_receiver

    status = webhook_post(url=url.replace("/hook", "/moved"), payload={"rule": "r"})

    assert status == "failed: HTTP 307"
    assert len(received) == 1
