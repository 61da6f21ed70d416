# Bucket names follow S3's naming rules from here on. Rows written before the rules were
# enforced whose names break them are removed, each with an audit event in its org: such
# a name (say "bravo-data/pwned.txt") could stand for another org's bucket in the store.

from django.db import migrations, models

import gateway.models


def remove_invalid_buckets(apps, schema_editor):
    # The audit trail's record() runs on the current models: it appends to hash chains
    # whose rules live in code, not in the historical models.
    from audit.trail import Actor
    from gateway.services import remove_invalid_buckets

    remove_invalid_buckets(Actor.system("migration gateway.0003"))


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_key_usage"),
        ("audit", "0004_alter_auditevent_actor_type"),
        ("keys", "0003_key_expiry"),
        ("accounts", "0002_api_tokens"),
    ]

    operations = [
        migrations.AlterField(
            model_name="bucket",
            name="name",
            field=models.CharField(
                max_length=63, unique=True, validators=[gateway.models.validate_bucket_name]
            ),
        ),
        migrations.RunPython(remove_invalid_buckets, migrations.RunPython.noop),
    ]
