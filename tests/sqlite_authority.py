"""The gateway's key cache on SQLite, the embedded default: lookups answered from memory
until another connection commits, then read again.

Run as ``python -m tests.sqlite_authority`` without DATABASE_URL or REDIS_URL (so the
settings pick SQLite in EXCLOUD_VAR_DIR and no Redis); prints what happened as JSON for
tests/test_gateway_authority.py. The revoke runs in another process, as the web's would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import django

REVOKE = """
import django; django.setup()
from keys.models import AccessKey, KeyStatus
AccessKey.objects.filter(pk="{key_id}").update(status=KeyStatus.REVOKED)
"""


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Organization
    from gateway import authority
    from keys import credentials
    from keys.models import AccessKey, CreatedVia

    assert connection.vendor == "sqlite", connection.vendor
    call_command("migrate", verbosity=0, interactive=False)
    org = Organization.objects.create(slug="cache", name="Cache")
    key_id = credentials.new_access_key_id()
    kek_id, sealed = credentials.seal(credentials.new_secret(), key_id)
    AccessKey.objects.create(
        id=key_id,
        org=org,
        name="cached",
        secret_sealed=sealed,
        secret_kek_id=kek_id,
        created_via=CreatedVia.API,
    )
    connection.close()

    async def run() -> dict:
        cache = authority.Authority("")
        statuses = []
        try:
            for _ in range(5):
                statuses.append((await cache.lookup(key_id, ())).key.status)
            before = {"hits": cache.hits, "misses": cache.misses}
            revoke = REVOKE.format(key_id=key_id)
            subprocess.run([sys.executable, "-c", revoke], check=True, env=os.environ)
            statuses.append((await cache.lookup(key_id, ())).key.status)
            statuses.append((await cache.lookup(key_id, ())).key.status)
            usable = (await cache.current_key(key_id)).usable()
            return {
                "statuses": statuses,
                "before_revoke": before,
                "after": {"hits": cache.hits, "misses": cache.misses},
                "still_usable": usable,
            }
        finally:
            await cache.aclose()

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
