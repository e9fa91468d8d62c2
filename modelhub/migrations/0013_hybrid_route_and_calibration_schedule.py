"""The PAM hybrid document's route: "hybrid", a complexity route whose simple requests go to
"hybrid-simple" (GPT-4o-mini, then the cheap models) and complex ones to the "pam" chain,
aiming at 5% complex, with the SarvanOM document's latency budget per request category
(5 / 7 / 10 s). And the daily calibration of complexity routes' thresholds in the beat
schedule. Only what is missing is created: an operator's edits are never overwritten."""

from django.db import migrations

TASK = "modelhub.tasks.calibrate_complexity"
SIMPLE_CHAIN = ["gpt-4o-mini", "gemini-2.5-flash-lite", "llama-3.1-8b-instant"]
BUDGETS_MS = {"simple": 5000, "technical": 7000, "research": 10000}


def hybrid_create(apps, schema_editor):
    AIModel = apps.get_model("modelhub", "AIModel")
    Route = apps.get_model("modelhub", "Route")
    RouteEntry = apps.get_model("modelhub", "RouteEntry")
    strong = Route.objects.filter(name="pam").first()
    simple, created = Route.objects.get_or_create(
        name="hybrid-simple", defaults=dict(description="PAM hybrid: the cheap chain simple requests take")
    )
    if created:
        models = {m.model_id: m for m in AIModel.objects.filter(model_id__in=SIMPLE_CHAIN)}
        RouteEntry.objects.bulk_create(
            RouteEntry(route=simple, model=models[m], position=i) for i, m in enumerate(SIMPLE_CHAIN) if m in models
        )
    Route.objects.get_or_create(
        name="hybrid",
        defaults=dict(
            description="PAM hybrid: simple requests to the cheap chain, complex ones to the pam chain",
            strategy="complexity",
            simple_route=simple,
            complex_route=strong,
            strong_share_target=0.05,
            class_budgets_ms=BUDGETS_MS,
        ),
    )


def schedule_create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    daily, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="0", timezone="UTC")
    PeriodicTask.objects.get_or_create(name=TASK, defaults=dict(task=TASK, crontab=daily))


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0012_lifecycle_seed"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(hybrid_create, migrations.RunPython.noop),
        migrations.RunPython(schedule_create, migrations.RunPython.noop),
    ]
