"""Rollouts: the analysis of running rollouts in the beat schedule, every minute
(``modelhub.tasks.analyze_rollouts``), and the alert metric of a rolled back rollout (each
gets a rule of its own, made when it rolls back). Only what is missing is created: an
operator's edits to the schedule are never overwritten."""

from django.db import migrations, models

TASK = "modelhub.tasks.analyze_rollouts"


def schedule_create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name=TASK, defaults=dict(task=TASK, interval=every_minute))


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0017_rollouts_conversations_routing_explanation"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertrule",
            name="metric",
            field=models.CharField(
                choices=[
                    ("daily_cost", "Daily cost (USD)"),
                    ("avg_cost_per_request", "Average cost per request (USD)"),
                    ("request_share", "Share of requests (0-1)"),
                    ("model_lifecycle", "Model lifecycle (days to retirement)"),
                    ("strong_share", "Complexity routes: share sent to the complex route (0-1)"),
                    ("rollout", "Rollout rolled back (the figure that failed its check)"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(schedule_create, migrations.RunPython.noop),
    ]
