"""The default Celery beat schedule of the ledger sweeper (``modelhub.tasks.ledger_sweep``):
every minute, the usage spools of dead processes on the worker's machine are replayed. Only
created when missing, as in 0005: an operator's edits in admin are never overwritten."""

from django.db import migrations

TASK = "modelhub.tasks.ledger_sweep"


def schedule_create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name=TASK, defaults=dict(task=TASK, interval=every_minute))


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0007_api_key_lifecycle"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(schedule_create, migrations.RunPython.noop),
    ]
