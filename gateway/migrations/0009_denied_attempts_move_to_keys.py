# DeniedAttempt moves to the keys app (keys/migrations/0008_denied_attempts.py); the table,
# its rows and its constraints stay as they are, only the model state changes app.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0008_key_usage_moves_to_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="DeniedAttempt")],
            database_operations=[],
        ),
    ]
