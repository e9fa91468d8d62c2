"""Price checks (``modelhub.prices``): what the comparison with the genai-prices database
found, waiting for an operator; and the daily check in the beat schedule. Only what is
missing is created: an operator's edits to the schedule are never overwritten."""

import django.db.models.deletion
from django.db import migrations, models

TASK = "modelhub.tasks.prices_check"


def schedule_create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    daily, _ = CrontabSchedule.objects.get_or_create(minute="45", hour="0", timezone="UTC")
    PeriodicTask.objects.get_or_create(name=TASK, defaults=dict(task=TASK, crontab=daily))


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0014_alert_metric_model_lifecycle"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="PriceCheck",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[("difference", "Price differs"), ("unknown", "No known price")], max_length=16
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("applied", "Applied"), ("dismissed", "Dismissed")],
                        db_index=True,
                        default="pending",
                        max_length=16,
                    ),
                ),
                (
                    "stored_input",
                    models.DecimalField(decimal_places=6, max_digits=12, verbose_name="stored input $ / 1M"),
                ),
                (
                    "stored_output",
                    models.DecimalField(decimal_places=6, max_digits=12, verbose_name="stored output $ / 1M"),
                ),
                (
                    "found_input",
                    models.DecimalField(
                        blank=True, decimal_places=6, max_digits=12, null=True, verbose_name="found input $ / 1M"
                    ),
                ),
                (
                    "found_output",
                    models.DecimalField(
                        blank=True, decimal_places=6, max_digits=12, null=True, verbose_name="found output $ / 1M"
                    ),
                ),
                (
                    "source",
                    models.CharField(
                        blank=True,
                        help_text="The database and the entry matched, e.g. genai-prices 0.2.3 anthropic/…",
                        max_length=200,
                    ),
                ),
                (
                    "note",
                    models.CharField(blank=True, help_text="Price tiers, or why the price is unknown.", max_length=300),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("checked_at", models.DateTimeField(help_text="The last check that found it.")),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("resolved_by", models.CharField(blank=True, max_length=150)),
                (
                    "model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="price_checks",
                        to="modelhub.aimodel",
                    ),
                ),
            ],
            options={
                "ordering": ["-checked_at", "-id"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status", "pending")),
                        fields=("model",),
                        name="pricecheck_one_pending_per_model",
                    )
                ],
            },
        ),
        migrations.RunPython(schedule_create, migrations.RunPython.noop),
    ]
