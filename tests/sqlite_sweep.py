"""One expiry sweep batch with a status change that lands between the batch's selection and
its conditional update.

On SQLite, the embedded default, nothing stops that: SQLite has no row locks, so another
writer can change a selected key before the update. Run as ``python -m tests.sqlite_sweep``
without DATABASE_URL (so the settings pick SQLite in EXCLOUD_VAR_DIR), this prints what
happened as JSON for tests/test_expiry.py. The change is made at that point on the sweep's
own connection (the sweep's transaction holds SQLite's write lock, so a second connection
would only wait for it).

tests/test_expiry.py also calls ``sweep_with_a_revoke_in_between`` in its own process on
PostgreSQL, where the sweep's row locks keep other writers out but its own connection can
still make the change: the same code path, in the process a mutation run can see.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import django


def sweep_with_a_revoke_in_between() -> dict:
    """Three keys past their expiry date; the second is revoked once the sweep has
    selected them. Returns what the sweep did, as JSON-ready data."""
    from django.utils import timezone

    from accounts.models import Organization
    from audit.models import AuditEvent
    from keys import credentials, expiry
    from keys.models import AccessKey, CreatedVia, KeyStatus

    org = Organization.objects.create(slug="sweep", name="Sweep")
    now = timezone.now()
    ids = []
    for name in ("first", "revoked meanwhile", "last"):
        key_id = credentials.new_access_key_id()
        kek_id, sealed = credentials.seal(credentials.new_secret(), key_id)
        AccessKey.objects.create(
            id=key_id,
            org=org,
            name=name,
            secret_sealed=sealed,
            secret_kek_id=kek_id,
            created_via=CreatedVia.API,
            expires_at=now - timedelta(hours=1),
        )
        ids.append(key_id)
    revoked_meanwhile = ids[1]

    # The sweep reads the org policies right after it selected and locked its batch and
    # before its conditional update: the other writer's change lands there.
    policies = expiry._policies

    def policies_then_revoke(org_ids):
        AccessKey.objects.filter(pk=revoked_meanwhile).update(
            status=KeyStatus.REVOKED, status_reason="revoked by its owner"
        )
        return policies(org_ids)

    expiry._policies = policies_then_revoke
    try:
        expired = expiry.expire_batch(now)
    finally:
        expiry._policies = policies

    keys = {k.id: k for k in AccessKey.objects.filter(pk__in=ids)}
    events = AuditEvent.objects.filter(action="access_key.expired").order_by("pk")
    return {
        "ids": ids,
        "expired": expired,
        "status": {key_id: keys[key_id].status for key_id in ids},
        "reason": {key_id: keys[key_id].status_reason for key_id in ids},
        "events": [event.target_id for event in events],
        "again": expiry.expire_batch(now),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    assert connection.vendor == "sqlite", connection.vendor
    call_command("migrate", verbosity=0, interactive=False)
    print(json.dumps(sweep_with_a_revoke_in_between()))


if __name__ == "__main__":
    main()
