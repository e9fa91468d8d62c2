from django.db import migrations


def seed(apps, schema_editor):
    from modelhub.catalog import catalog_seed

    catalog_seed(**{name: apps.get_model("modelhub", name) for name in ("Provider", "AIModel", "Route", "RouteEntry")})


class Migration(migrations.Migration):
    dependencies = [("modelhub", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
