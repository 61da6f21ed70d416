"""Shared by the audit benchmarks: a fast, realistic audit trail (the database is benchdb's).

Not a benchmark itself. The trail is written with COPY, straight into the table with its
append-only triggers in place: every event has its org's next seq, a time that rises with
seq over a year (with the odd event stamped a moment out of order, as a lock wait causes),
an actor, an action, a target and details in the shapes the services write. The hashes are
stand-ins: the page and the exports never verify the chain, and hashing the canonical form
a million times would take longer than everything else together.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402

from audit.export import FIELDS  # noqa: E402

# Rows are loaded with the audit app at this migration: the table, its first indexes and
# the append-only triggers. Indexes from later migrations are built after the load.
LOAD_AT = "0002_append_only_triggers"
SPREAD = timedelta(days=365)
END = datetime(2026, 11, 1, tzinfo=UTC)
USERS = 40
# Someone who left in the trail's first month: their events are all at the far end.
LEAVER = "leaver@bench.test"
LEAVER_UNTIL = END - SPREAD + timedelta(days=30)
LEAVER_SHARE = 0.1
NAME_KINDS = ("laptop", "ci-deploy", "backup-agent", "rclone-sync")
# (reason, weight): a leak is rare, and searched for.
REASONS = (("laptop lost", 40), ("rotated", 40), ("employee left", 19), ("leaked in a CI log", 1))
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "exc/0.1 python-httpx/0.28",
)
# (action, weight): key work dominates, as in a real trail.
ACTIONS = (
    ("access_key.created", 30),
    ("access_key.deactivated", 12),
    ("access_key.reactivated", 8),
    ("access_key.revoked", 10),
    ("access_key.expired", 6),
    ("member.invited", 2),
    ("member.joined", 2),
    ("member.role_changed", 1),
    ("member.removed", 0.5),
    ("member.invitation_revoked", 0.5),
    ("audit.exported", 0.5),
)
# The table's columns as the export writes them, plus the org.
COLUMNS = ("org_id", *FIELDS)


def user_email(n: int) -> str:
    return f"user{n:02d}@bench.test"


def setup_django() -> None:
    """Migrate, then step the audit app back to LOAD_AT for the bulk load (see finish_load)."""
    benchdb.setup_django()
    from django.core.management import call_command

    call_command("migrate", "audit", LOAD_AT, verbosity=0)


def finish_load(audit_migration: str | None) -> float:
    """Migrate the audit app forward (building later indexes over the loaded rows, which is
    far quicker than keeping them up to date row by row), then ANALYZE, which also gathers
    the statistics of expression indexes. Returns the seconds it took."""
    from django.core.management import call_command
    from django.db import connection

    began = time.perf_counter()
    if audit_migration:
        call_command("migrate", "audit", audit_migration, verbosity=0)
    else:
        call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
        cursor.execute("ANALYZE keys_accesskey")
    return time.perf_counter() - began


def make_users() -> list:
    """USERS people, shared by the orgs; user00 owns them."""
    from accounts.models import User

    users = [User(email=user_email(n)) for n in range(USERS)] + [User(email=LEAVER)]
    for user in users:
        user.set_unusable_password()
    return User.objects.bulk_create(users)


def make_org(slug: str, users: list):
    """An org owned by users[0], with everyone else a member."""
    from accounts.models import Membership, Role
    from accounts.services import create_org
    from audit.trail import Actor

    org = create_org(users[0], slug.title(), Actor.system("bench"), slug=slug)
    Membership.objects.bulk_create(
        [Membership(org=org, user=u, role=Role.MEMBER) for u in users[1:]]
    )
    return org


def make_keys(org, owner, count: int) -> list[tuple[str, str]]:
    """Insert keys directly (the sealed secret is filler: nothing opens it); (id, name) each."""
    from keys.credentials import new_access_key_id
    from keys.models import AccessKey, CreatedVia, KeyStatus

    keys = [
        AccessKey(
            id=new_access_key_id(),
            org=org,
            name=f"{NAME_KINDS[n % len(NAME_KINDS)]}-{n:05d}",
            secret_sealed=b"\0" * 56,
            secret_kek_id="bench",
            created_by=owner,
            created_via=CreatedVia.WEB,
            status=KeyStatus.ACTIVE,
        )
        for n in range(count)
    ]
    AccessKey.objects.bulk_create(keys, batch_size=2000)
    return [(k.id, k.name) for k in keys]


class Trail:
    """One org's generator of events, continuing its chain from the current head."""

    def __init__(self, org, users, keys: list[tuple[str, str]], rng: random.Random) -> None:
        from audit.chain import chain_name
        from audit.models import AuditChainHead

        self.org_id = org.pk
        self.slug = org.slug
        self.chain = chain_name(org.pk)
        head = AuditChainHead.objects.get(chain=self.chain)
        self.seq, self.hash = head.seq, head.hash
        self.users = [(u.pk, u.email) for u in users if u.email != LEAVER]
        self.leaver = next((u.pk, u.email) for u in users if u.email == LEAVER)
        # Zipf-like: a few people do most of the work.
        self.user_weights = [1 / (n + 1) for n in range(len(self.users))]
        self.keys = keys
        self.rng = rng
        self.actions = [a for a, _ in ACTIONS]
        self.action_weights = [w for _, w in ACTIONS]
        self.reasons = [r for r, _ in REASONS]
        self.reason_weights = [w for _, w in REASONS]

    def event(self, at: datetime) -> tuple:
        rng = self.rng
        self.seq += 1
        action = rng.choices(self.actions, self.action_weights)[0]
        actor_type, user_id, label = "user", None, ""
        if action == "access_key.expired":
            actor_type, label = "system", "system"
        elif action.startswith("access_key.") and rng.random() < 0.15:
            actor_type, label = "api_token", "api token deploy-bot"
        elif at < LEAVER_UNTIL and rng.random() < LEAVER_SHARE:
            user_id, label = self.leaver
        else:
            user_id, label = rng.choices(self.users, self.user_weights)[0]
        if action.startswith("access_key."):
            key_id, name = rng.choice(self.keys)
            target = ("access_key", key_id)
            details: dict = {"name": name}
            if action == "access_key.created":
                details["via"] = "web" if rng.random() < 0.7 else "api"
            elif action == "access_key.revoked":
                details.update(
                    {
                        "from": ["active", "inactive"],
                        "to": "revoked",
                        "reason": rng.choices(self.reasons, self.reason_weights)[0],
                    }
                )
            elif action != "access_key.expired":
                details["to"] = "inactive" if action.endswith("deactivated") else "active"
        elif action == "audit.exported":
            target = ("org", self.slug)
            details = {"format": rng.choice(["csv", "jsonl"]), "filters": {}}
        else:
            member_id, email = rng.choice(self.users)
            target = ("user", str(member_id))
            details = {"email": email, "role": rng.choice(["member", "admin", "auditor"])}
        human = actor_type == "user"
        prev, self.hash = self.hash, hashlib.sha256(f"{self.chain}:{self.seq}".encode()).hexdigest()
        return (
            self.org_id,
            self.seq,
            at,
            actor_type,
            user_id,
            label,
            action,
            target[0],
            target[1],
            f"203.0.113.{rng.randrange(1, 255)}" if human else None,
            rng.choice(USER_AGENTS) if human else "",
            f"{rng.getrandbits(128):032x}" if human else "",
            json.dumps(details),
            prev,
            self.hash,
        )

    def save_head(self) -> None:
        from audit.models import AuditChainHead

        AuditChainHead.objects.filter(chain=self.chain).update(seq=self.seq, hash=self.hash)


def fill(trails: list[tuple[Trail, int]], rng: random.Random, progress: Callable | None = None):
    """COPY the events of several orgs, interleaved as they would arrive, over one year."""
    from django.db import connection

    total = sum(n for _, n in trails)
    left = [n for _, n in trails]
    weights = list(left)
    start = END - SPREAD
    step = SPREAD / total
    began = time.perf_counter()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(total):
                k = rng.choices(range(len(trails)), weights)[0]
                left[k] -= 1
                weights[k] = left[k]
                at = start + step * i
                if rng.random() < 0.002:
                    # Now and then an event waited for the chain's lock after its stamp.
                    at -= timedelta(seconds=rng.uniform(0, 3))
                copy.write_row(trails[k][0].event(at))
                if progress and (i + 1) % 250_000 == 0:
                    progress(i + 1, total, time.perf_counter() - began)
    for trail, _ in trails:
        trail.save_head()
    return time.perf_counter() - began
