"""Indexes for the audit page's actor filter and free-text search (bench/audit_page.py).

- audit_org_actor_label_idx: an actor's events in seq order, so the page of someone who
  last acted a year ago is read from the index instead of by scanning a year of events.
- audit_text_trgm_idx (PostgreSQL only): trigram GIN over the four texts the search box
  matches, so a rare word is found through the index instead of by reading every event.
  The expressions are exactly those Django writes for ``icontains`` on each column, or the
  planner would not match them. SQLite, the embedded default, gets no such index.
"""

from __future__ import annotations

import django.db.models.functions.text
from django.db import migrations, models

TRIGRAM_INDEX = """
CREATE INDEX audit_text_trgm_idx ON audit_auditevent USING gin (
    upper(action::text) gin_trgm_ops,
    upper(actor_label::text) gin_trgm_ops,
    upper(target_id::text) gin_trgm_ops,
    upper(details::text) gin_trgm_ops
)
"""


def add_trigram_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # pg_trgm is a trusted extension: a database owner may create it without superuser.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm", params=None)
    schema_editor.execute(TRIGRAM_INDEX, params=None)


def drop_trigram_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS audit_text_trgm_idx", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                models.F("org"),
                django.db.models.functions.text.Upper("actor_label"),
                models.OrderBy(models.F("seq"), descending=True),
                name="audit_org_actor_label_idx",
            ),
        ),
        migrations.RunPython(add_trigram_index, drop_trigram_index),
    ]
