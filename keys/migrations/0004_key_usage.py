# KeyUsage comes from the gateway app (gateway/migrations/0008_key_usage_moves_to_keys.py)
# with its table: gateway_keyusage keeps its name, rows and constraints; only the model
# state changes app.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0003_key_expiry"),
        ("gateway", "0008_key_usage_moves_to_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="KeyUsage",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("hour", models.DateTimeField()),
                        ("requests", models.BigIntegerField(default=0)),
                        ("bytes_in", models.BigIntegerField(default=0)),
                        ("bytes_out", models.BigIntegerField(default=0)),
                        ("errors", models.BigIntegerField(default=0)),
                        ("denied", models.BigIntegerField(default=0)),
                        (
                            "access_key",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="usage",
                                to="keys.accesskey",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "gateway_keyusage",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("access_key", "hour"), name="keyusage_key_hour_unique"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
