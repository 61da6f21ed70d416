# KeyUsage moves to the keys app (keys/migrations/0004_key_usage.py); the table, its rows
# and its constraints stay as they are, only the model state changes app.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0007_usage_batches"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="KeyUsage")],
            database_operations=[],
        ),
    ]
