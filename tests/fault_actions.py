"""What the fault tests do on the portal's side, run as its own process against the
database and Redis in its environment (tests/own_services.py), through the same service
functions as the dashboard: ``python -m tests.fault_actions COMMAND [ARGS]``.

Commands print one JSON value:
  setup SLUG EMAIL         an org with its owner -> {}
  new-key SLUG NAME        a key of the org's owner -> {"id": ..., "secret": ...}
  revoke KEY_ID            revoke as the org's owner -> {"status": ..., "seconds": ...}
  narrow KEY_ID BUCKET PREFIX
                           narrow to reading PREFIX in BUCKET, as the org's owner -> {"scope": ...}
  token SLUG               an API token of the org's owner -> {"token": ...}
  requests KEY_ID          the requests counted for the key -> int
  events ACTION            how many audit events of that action there are -> int
"""

from __future__ import annotations

import json
import os
import sys
import time

import django


def main(argv: list[str]) -> object:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
    django.setup()
    from django.db.models import Sum

    from accounts.models import Membership, Organization, Role, User
    from accounts.tokens import create_api_token
    from audit.models import AuditEvent
    from audit.trail import Actor
    from keys.models import AccessKey, KeyUsage
    from keys.scope import READ_ONLY, Scope
    from keys.services import create_key, narrow_key_scope, revoke_key

    def owner_of(org: Organization) -> Membership:
        return Membership.objects.select_related("user", "org").get(org=org, role=Role.OWNER)

    command, *args = argv
    if command == "setup":
        slug, email = args
        org = Organization.objects.create(slug=slug, name=slug)
        user = User.objects.create_user(email=email, password=None)
        Membership.objects.create(org=org, user=user, role=Role.OWNER)
        return {}
    if command == "new-key":
        slug, name = args
        owner = owner_of(Organization.objects.get(slug=slug))
        created = create_key(owner, Actor.for_user(owner.user), name)
        return {"id": created.key.id, "secret": created.secret}
    if command == "revoke":
        (key_id,) = args
        key = AccessKey.objects.select_related("org").get(pk=key_id)
        owner = owner_of(key.org)
        started = time.monotonic()
        key = revoke_key(owner, Actor.for_user(owner.user), key)
        return {"status": key.status, "seconds": time.monotonic() - started}
    if command == "narrow":
        key_id, bucket, prefix = args
        key = AccessKey.objects.select_related("org").get(pk=key_id)
        owner = owner_of(key.org)
        scope = Scope.build(permission=READ_ONLY, buckets=[(bucket, prefix)])
        key = narrow_key_scope(owner, Actor.for_user(owner.user), key, scope)
        return {"scope": key.key_scope.describe()}
    if command == "token":
        (slug,) = args
        owner = owner_of(Organization.objects.get(slug=slug))
        return {"token": create_api_token(owner, Actor.for_user(owner.user), "faults").plaintext}
    if command == "requests":
        (key_id,) = args
        total = KeyUsage.objects.filter(access_key_id=key_id).aggregate(n=Sum("requests"))["n"]
        return total or 0
    if command == "events":
        (action,) = args
        return AuditEvent.objects.filter(action=action).count()
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
