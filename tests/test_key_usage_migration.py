"""Moving KeyUsage from the gateway app to the keys app keeps the table and its rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("gateway", "0007_usage_batches"), ("keys", "0003_key_expiry")]
AFTER = [("gateway", "0008_key_usage_moves_to_keys"), ("keys", "0004_key_usage")]
HOUR = datetime(2026, 11, 30, 9, tzinfo=UTC)


def _migrate(targets):
    """Migrate to the targets; the models as every migration applied now has them."""
    MigrationExecutor(connection).migrate(targets)
    loader = MigrationExecutor(connection).loader
    return loader.project_state(list(loader.applied_migrations)).apps


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_usage_rows_when_the_model_moves_to_keys():
    old = _migrate(BEFORE)
    try:
        org = old.get_model("accounts", "Organization").objects.create(slug="acme", name="Acme")
        key = old.get_model("keys", "AccessKey").objects.create(
            id="EXCAAAAAAAAAAAAAAAAA",
            org=org,
            name="laptop",
            secret_sealed=b"sealed",
            secret_kek_id="k1",
            created_via="web",
        )
        old.get_model("gateway", "KeyUsage").objects.create(
            access_key=key, hour=HOUR, requests=7, bytes_in=100, bytes_out=200, errors=1, denied=2
        )

        new = _migrate(AFTER)
        usage = new.get_model("keys", "KeyUsage")
        assert usage._meta.db_table == "gateway_keyusage"
        assert list(
            usage.objects.values_list(
                "access_key_id", "hour", "requests", "bytes_in", "bytes_out", "errors", "denied"
            )
        ) == [("EXCAAAAAAAAAAAAAAAAA", HOUR, 7, 100, 200, 1, 2)]

        back = _migrate(BEFORE)
        assert back.get_model("gateway", "KeyUsage").objects.get(access_key_id=key.pk).requests == 7
    finally:
        # Every app at its latest migration again, as the rest of the suite expects.
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
