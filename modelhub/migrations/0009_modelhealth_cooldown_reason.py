from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("modelhub", "0008_ledger_sweep_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelhealth",
            name="cooldown_reason",
            field=models.CharField(
                blank=True,
                help_text="The breaker's last decision: what took the model out, for how long, why.",
                max_length=300,
            ),
        ),
    ]
