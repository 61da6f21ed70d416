# DeniedAttempt comes from the gateway app (gateway/migrations/0009_denied_attempts_move_to_keys.py)
# with its table, then gains ``signed``: refused requests that carried the key's correct
# signature are counted apart from those that did not authenticate.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_api_tokens"),
        ("keys", "0007_usage_days"),
        ("gateway", "0009_denied_attempts_move_to_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DeniedAttempt",
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
                        ("access_key_id", models.CharField(blank=True, max_length=32)),
                        ("source_ip", models.CharField(blank=True, max_length=45)),
                        ("hour", models.DateTimeField()),
                        ("count", models.BigIntegerField(default=0)),
                        (
                            "org",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="accounts.organization",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "gateway_deniedattempt",
                        "indexes": [
                            models.Index(fields=["org", "hour"], name="deniedattempt_org_hour_idx")
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("access_key_id", "source_ip", "hour"),
                                name="deniedattempt_unique",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="deniedattempt",
            name="signed",
            field=models.BooleanField(default=False),
        ),
        migrations.RemoveConstraint(model_name="deniedattempt", name="deniedattempt_unique"),
        migrations.AddConstraint(
            model_name="deniedattempt",
            constraint=models.UniqueConstraint(
                fields=("access_key_id", "source_ip", "hour", "signed"),
                name="deniedattempt_unique_signed",
            ),
        ),
    ]
