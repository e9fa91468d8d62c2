"""Every catalog model's retirement date, where it comes from, and its successor; the
successor models the catalog lacked (modelhub.catalog, LIFECYCLE and SUCCESSOR_MODELS)."""

from django.db import migrations


def lifecycle(apps, schema_editor):
    from modelhub.catalog import lifecycle_seed

    lifecycle_seed(Provider=apps.get_model("modelhub", "Provider"), AIModel=apps.get_model("modelhub", "AIModel"))


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0011_routing_strategies_lifecycle_ledger_routing"),
    ]

    operations = [
        migrations.RunPython(lifecycle, migrations.RunPython.noop),
    ]
