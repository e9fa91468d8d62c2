"""Cost alerts: each enabled rule is measured on today's DailyCost rows; a rule above its
threshold creates one Alert per day (a unique constraint, so concurrent evaluations agree)
and notifies by email and by webhook.

Lifecycle alerts ride on the same evaluation: a model of an enabled route retiring within
30 days, or retired, raises one Alert per model and state. Each such model gets a rule of
its own (metric ``model_lifecycle``, made on first need, its emails, webhook and on/off
editable like any rule's); the alert's period is the day the state began, so the unique
constraint keeps it to one, whichever day the task first sees it."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal

import aiohttp
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum

from . import selectors
from .costs import today
from .lifecycle import WARNING_DAYS, RouteRisk, routes_at_risk, state_since, state_text
from .models import Alert, AlertRule, DailyCost
from .providers.transport import json_post, refusal_of
from .providers.urls import base_url_validate

log = logging.getLogger("modelhub.alerts")
WEBHOOK_TIMEOUT_SECONDS = 10
Metric, Scope = AlertRule.Metric, AlertRule.Scope
LIFECYCLE_METRIC = "model_lifecycle"  # not measured on DailyCost: see lifecycle_alerts_raise
LIFECYCLE_RULE = "Model lifecycle: {model}"


def _scoped(rows: QuerySet, rule: AlertRule) -> QuerySet:
    if rule.scope == Scope.ROUTE:
        return rows.filter(route=rule.target)
    if rule.scope == Scope.MODEL:
        return rows.filter(model=rule.target)
    return rows


def _sums(rows: QuerySet) -> tuple[Decimal, int]:
    sums = rows.aggregate(cost=Sum("cost_usd"), requests=Sum("requests"))
    return sums["cost"] or Decimal(0), sums["requests"] or 0


def rule_measure(*, rule: AlertRule, day: date) -> tuple[Decimal | None, int]:
    """The rule's figure for the day and the requests it rests on; None when undefined.
    Cost includes probes (money spent); averages and shares count client requests only."""
    if rule.metric == Metric.STRONG_SHARE:
        return strong_share_measure(rule=rule, day=day)
    rows = DailyCost.objects.filter(day=day)
    traffic = rows.filter(is_probe=False)
    if rule.metric == Metric.DAILY_COST:
        cost, _ = _sums(_scoped(rows, rule))
        return cost, _sums(_scoped(traffic, rule))[1]
    if rule.metric == Metric.AVG_COST:
        cost, requests = _sums(_scoped(traffic, rule))
        return (cost / requests if requests else None), requests
    part, total = _sums(_scoped(traffic, rule))[1], _sums(traffic)[1]
    return (Decimal(part) / total if total else None), total


def strong_share_measure(*, rule: AlertRule, day: date) -> tuple[Decimal | None, int]:
    """The share of the day's requests that complexity routes sent to their complex route:
    the rule's route's, or all complexity routes' together (read from the ledger)."""
    figures = selectors.complexity_metrics(day=day)
    if rule.scope == Scope.ROUTE:
        figures = {rule.target: figures[rule.target]} if rule.target in figures else {}
    requests = sum(f["requests"] for f in figures.values())
    strong = sum(f["complex_requests"] for f in figures.values())
    return (Decimal(strong) / requests if requests else None), requests


def rule_fires(*, rule: AlertRule, value: Decimal | None, requests: int) -> bool:
    if value is None or value <= rule.threshold:
        return False
    return rule.metric == Metric.DAILY_COST or requests >= rule.min_requests


def alerts_evaluate(*, day: date | None = None) -> list[Alert]:
    """Check every enabled cost rule for ``day`` (today), then the models of enabled routes
    against their retirement dates (as of now); returns the alerts created now."""
    day = day or today()
    created = []
    for rule in AlertRule.objects.filter(enabled=True).exclude(metric__in=(LIFECYCLE_METRIC, Metric.ROLLOUT)):
        value, requests = rule_measure(rule=rule, day=day)
        if value is not None and rule_fires(rule=rule, value=value, requests=requests):
            alert = _alert_create(rule, day, value, alert_message(rule=rule, day=day, value=value))
            if alert is not None:
                created.append(alert)
    return created + lifecycle_alerts_raise(day=datetime.now(UTC).date())


def _alert_create(rule: AlertRule, period: date, value: Decimal, message: str) -> Alert | None:
    """The period's alert of this rule, notified; None when one exists already."""
    if Alert.objects.filter(rule=rule, period=period).exists():
        return None
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, period=period, value=value, threshold=rule.threshold, message=message
            )
    except IntegrityError:  # another worker created it first
        return None
    alert_notify(alert=alert)
    return alert


def lifecycle_alerts_raise(*, day: date) -> list[Alert]:
    """One alert per model of an enabled route retiring within WARNING_DAYS or retired, and
    per state: its value is the days left (0 or less once retired)."""
    snapshot = selectors.routing_snapshot()  # the routes as chat answers from them: overrides applied
    models_by_pk = {model.pk: model for model in snapshot.models.values()}
    by_model: dict[int, list[RouteRisk]] = {}
    for risk in routes_at_risk(snapshot.routes.values(), models_by_pk, day):
        by_model.setdefault(risk.model.pk, []).append(risk)
    created = []
    for risks in by_model.values():
        alert = _lifecycle_alert(risks, day)
        if alert is not None:
            created.append(alert)
    return created


def _lifecycle_alert(risks: list[RouteRisk], day: date) -> Alert | None:
    model = risks[0].model
    rule = lifecycle_rule(provider=model.provider.name, model_id=model.model_id)
    period, retires_on = state_since(model, day), model.retires_on
    if not rule.enabled or period is None or retires_on is None:
        return None
    message = f"{model.model_id} ({model.provider.name}) {state_text(model, day)}, used by {_routes_text(risks)}."
    return _alert_create(rule, period, Decimal((retires_on - day).days), message)


def _routes_text(risks: list[RouteRisk]) -> str:
    """Which routes, and what takes the model's place: one text for all when they agree."""
    if len({risk.successor for risk in risks}) == 1:
        return f"route {', '.join(risk.route for risk in risks)}: {risks[0].successor}"
    return "routes " + ", ".join(f"{risk.route} ({risk.successor})" for risk in risks)


def lifecycle_rule(*, provider: str, model_id: str) -> AlertRule:
    """The model's lifecycle rule, made on first need (enabled, with the default recipients)."""
    rule, _ = AlertRule.objects.get_or_create(
        name=LIFECYCLE_RULE.format(model=f"{provider}/{model_id}")[: AlertRule._meta.get_field("name").max_length],
        defaults=dict(
            metric=LIFECYCLE_METRIC, threshold=Decimal(WARNING_DAYS), scope=Scope.MODEL, target=model_id[:200]
        ),
    )
    return rule


def figure(metric: str, value: Decimal) -> str:
    if metric in (Metric.REQUEST_SHARE, Metric.STRONG_SHARE):
        return f"{value * 100:.1f}%"
    return f"${value:.6f}"


def alert_message(*, rule: AlertRule, day: date, value: Decimal) -> str:
    what = Metric(rule.metric).label.split(" (")[0].lower()
    scope = "all traffic" if rule.scope == Scope.ALL else f"{rule.scope} {rule.target}"
    return (
        f"{rule.name}: {what} of {scope} on {day} is {figure(rule.metric, value)}, "
        f"above {figure(rule.metric, rule.threshold)}."
    )


def alert_notify(*, alert: Alert) -> None:
    """Email and webhook; a failed notification is logged and noted on the alert."""
    alert.emailed = _email_send(alert)
    if alert.rule.webhook_url:
        alert.webhook_status = webhook_post(url=alert.rule.webhook_url, payload=alert_payload(alert=alert))
    alert.save(update_fields=["emailed", "webhook_status"])
    log.warning("alert: %s", alert.message)


def _email_send(alert: Alert) -> bool:
    rule = alert.rule
    recipients = [e.strip() for e in rule.emails.split(",") if e.strip()] or settings.MODELHUB["ALERT_EMAILS"]
    if not recipients:
        return False
    try:
        send_mail(f"[PAM Model Hub] {rule.name}", alert.message, None, recipients)
    except Exception:
        log.exception("alert email for rule %s failed", rule.name)
        return False
    return True


def alert_payload(*, alert: Alert) -> dict:
    rule = alert.rule
    return {
        "alert_id": alert.pk,
        "rule": rule.name,
        "metric": rule.metric,
        "scope": rule.scope,
        "target": rule.target,
        "period": alert.period.isoformat(),
        "value": str(alert.value),
        "threshold": str(alert.threshold),
        "message": alert.message,
    }


def webhook_post(*, url: str, payload: dict) -> str:
    """POST the payload as JSON; returns the outcome to show on the alert. The URL is
    checked again here (SSRF): what resolved to a public address in admin may not now; and
    the connection checks its own lookup too (a guarded session), never following a redirect."""
    try:
        base_url_validate(url=url)
    except ValidationError as exc:
        return f"refused: {' '.join(exc.messages)}"[:200]
    try:
        status = async_to_sync(json_post)(url=url, payload=payload, timeout=WEBHOOK_TIMEOUT_SECONDS)
    except (aiohttp.ClientError, OSError) as exc:
        refusal = refusal_of(exc)
        if refusal is not None:
            return f"refused: {refusal}"[:200]
        log.warning("alert webhook failed: %s", exc)
        return f"failed: {type(exc).__name__}"
    return f"HTTP {status}" if status < 300 else f"failed: HTTP {status}"
