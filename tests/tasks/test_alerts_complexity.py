"""The PAM hybrid document's strong-share rule on complexity routes: more than 10% of a
day's requests sent to the complex route raises one alert."""

import pytest
from django.core import mail

from modelhub.alerts import alerts_evaluate
from modelhub.models import AIModel, AlertRule, Route
from tests.routing.test_strategies import COMPLEX, SIMPLE, ask

STRONG = "Complexity routes: over 10% to the complex route"


@pytest.fixture
def hybrid(hub, settings):
    settings.MODELHUB = {**settings.MODELHUB, "ALERT_EMAILS": ["ops@example.com"]}
    AIModel.objects.update(retires_on=None)  # the strong-share rule alone
    AlertRule.objects.exclude(name=STRONG).update(enabled=False)
    simple = hub.route("simple-chain", [hub.model("cheap")])
    strong = hub.route("strong-chain", [hub.model("strong", "anthropic")])
    Route.objects.filter(name="hybrid").delete()
    Route.objects.create(name="hybrid", strategy="complexity", simple_route=simple, complex_route=strong)
    return hub


def test_a_strong_share_over_10_percent_raises_one_alert(hybrid):
    for text in [SIMPLE] * 8 + [COMPLEX]:  # 1 of 9: 11%
        ask(hybrid, text)

    [alert] = alerts_evaluate()

    assert alerts_evaluate() == []  # once a day
    assert alert.rule.name == STRONG
    assert round(float(alert.value), 3) == round(1 / 9, 3)
    assert "11.1%" in alert.message
    assert len(mail.outbox) == 1


def test_a_strong_share_at_10_percent_raises_nothing(hybrid):
    for text in [SIMPLE] * 9 + [COMPLEX]:  # 1 of 10
        ask(hybrid, text)
    assert alerts_evaluate() == []


def test_a_rule_on_one_complexity_route_counts_that_route_only(hybrid):
    AlertRule.objects.filter(name=STRONG).update(scope="route", target="other-route")
    for text in [SIMPLE, COMPLEX]:
        ask(hybrid, text)
    assert alerts_evaluate() == []
