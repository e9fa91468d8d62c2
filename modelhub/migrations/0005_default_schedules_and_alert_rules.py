"""The default Celery beat schedules and cost alert rules. Only what is missing is created:
an operator's edits in admin are never overwritten."""

from decimal import Decimal

from django.db import migrations

EVERY_5_MINUTES = ["modelhub.tasks.probe_models", "modelhub.tasks.rollup_costs", "modelhub.tasks.evaluate_alerts"]
DAILY = [  # task, hour, minute (UTC)
    ("modelhub.tasks.discover_models", "3", "0"),
    ("modelhub.tasks.prune_usage", "3", "30"),
]

# The PAM hybrid document's cost alerts: daily cost over $5, average cost per query over
# $0.001, the expensive complex-task path over 10% of requests (here the "reasoning" route).
ALERT_RULES = [
    dict(name="Daily cost over $5", metric="daily_cost", threshold=Decimal("5"), scope="all"),
    dict(
        name="Average cost per request over $0.001",
        metric="avg_cost_per_request",
        threshold=Decimal("0.001"),
        scope="all",
        min_requests=20,
    ),
    dict(
        name="Route reasoning over 10% of requests",
        metric="request_share",
        threshold=Decimal("0.1"),
        scope="route",
        target="reasoning",
        min_requests=20,
    ),
]


def schedules_create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    for task in EVERY_5_MINUTES:
        PeriodicTask.objects.get_or_create(name=task, defaults=dict(task=task, interval=every_5))
    for task, hour, minute in DAILY:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*"
        )
        PeriodicTask.objects.get_or_create(name=task, defaults=dict(task=task, crontab=crontab))


def alert_rules_create(apps, schema_editor):
    AlertRule = apps.get_model("modelhub", "AlertRule")
    for rule in ALERT_RULES:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0004_costs_and_alerts"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(schedules_create, migrations.RunPython.noop),
        migrations.RunPython(alert_rules_create, migrations.RunPython.noop),
    ]
