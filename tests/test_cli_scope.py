"""Scoped keys with the installed `exc` against a live portal: created with --bucket,
--prefix, --read-only and --allow-ip, shown by `list`, narrowed (never widened) by
`scope`, refused where the member's role does not allow it."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from accounts.tokens import create_api_token
from audit.models import AuditEvent
from audit.trail import Actor
from keys.models import AccessKey
from keys.scope import Scope
from tests.cli_support import EXC

ISSUE_SCOPE = Scope.build(
    permission="read-only", buckets=[("logs", "app/")], networks=["10.0.0.0/8"]
)


def exc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXC), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def env_for(live_server, tmp_path):
    """The environment `exc` runs in, logged in with a token of the given member."""

    def make(membership) -> dict[str, str]:
        token = create_api_token(membership, Actor.for_user(membership.user), "cli")
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "EXC_TOKEN": token.plaintext,
            "EXC_API_URL": live_server.url,
        }

    return make


def created_id(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    match = re.match(
        r"ACCESS_KEY_ID: (EXC[A-Z2-7]{17})\nSECRET_ACCESS_KEY: \S{40}\n$", result.stdout
    )
    assert match, result.stdout
    return match.group(1)


def test_the_issues_command_line_creates_a_scoped_key_that_list_shows(env_for, owner):
    env = env_for(owner)
    key_id = created_id(
        exc(
            env,
            *"buckets keys create ingest --bucket logs --prefix app/ --read-only "
            "--allow-ip 10.0.0.0/8".split(),
        )
    )
    key = AccessKey.objects.get(pk=key_id)
    assert key.key_scope == ISSUE_SCOPE
    event = AuditEvent.objects.get(action="access_key.created", target_id=key_id)
    assert event.details["scope"] == ISSUE_SCOPE.as_api()

    plain = created_id(exc(env, "buckets", "keys", "create", "laptop"))

    listed = exc(env, "buckets", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "STATUS", "SCOPE"]
    row = next(r for r in rows if r.startswith(key_id))
    assert "read-only · logs/app/* · IP-limited" in row
    assert "admin · all buckets" in next(r for r in rows if r.startswith(plain))

    as_json = json.loads(exc(env, "buckets", "keys", "list", "--json").stdout)
    scopes = {k["id"]: k["scope"] for k in as_json}
    assert scopes == {
        key_id: ISSUE_SCOPE.as_api(),
        plain: {"permission": "admin", "buckets": None, "networks": []},
    }


def test_prefixes_pair_with_the_bucket_before_them(env_for, owner):
    env = env_for(owner)
    created = exc(
        env,
        *"buckets keys create two --bucket logs --prefix app/ --bucket backups "
        "--bucket media --prefix=img/ --read-write".split(),
    )
    key_id = created_id(created)
    assert AccessKey.objects.get(pk=key_id).key_scope == Scope.build(
        permission="read-write", buckets=[("logs", "app/"), "backups", ("media", "img/")]
    )
    assert "Scope: read-write on backups, logs/app/*, media/img/*" in created.stderr

    as_json = exc(env, *"buckets keys create j --bucket logs --read-only --json".split())
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["scope"] == {
        "permission": "read-only",
        "buckets": [{"name": "logs", "prefix": ""}],
        "networks": [],
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prefix", "app/", "--bucket", "logs"], "--prefix applies to the --bucket before it"),
        (["--prefix", "app/"], "--prefix applies to the --bucket before it"),
        (["--bucket", "logs", "--prefix", "a", "--prefix", "b"], "at most one --prefix"),
        (["--read-only", "--read-write"], "give one of --read-only, --read-write and --admin"),
    ],
)
def test_it_refuses_a_scope_it_cannot_read_before_asking_the_portal(env_for, owner, args, message):
    result = exc(env_for(owner), "buckets", "keys", "create", "ingest", *args)
    assert result.returncode == 2 and message in result.stderr
    assert not AccessKey.objects.exists()


def test_the_portal_explains_a_bad_scope(env_for, owner):
    result = exc(env_for(owner), "buckets", "keys", "create", "x", "--allow-ip", "10.1.2.3/8")
    assert result.returncode == 1
    assert "“10.1.2.3/8” is not an IP address or network" in result.stderr
    assert "(HTTP 422)" in result.stderr
    assert not AccessKey.objects.exists()


def test_scope_shows_and_narrows_after_confirmation_and_refuses_widening(env_for, owner):
    env = env_for(owner)
    key_id = created_id(
        exc(env, *"buckets keys create ingest --bucket logs --prefix app/ --read-write".split())
    )
    shown = exc(env, "buckets", "keys", "scope", key_id)
    assert shown.returncode == 0
    assert shown.stdout == f"Key {key_id} (ingest) may do read-write on logs/app/*.\n"

    unconfirmed = exc(env, "buckets", "keys", "scope", key_id, "--read-only")
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
    assert "Before: read-write on logs/app/*\nAfter:  read-only on logs/app/*" in (
        unconfirmed.stderr
    )
    assert AccessKey.objects.get(pk=key_id).key_scope.permission == "read-write"

    narrowed = exc(
        env,
        *f"buckets keys scope {key_id} --read-only --bucket logs --prefix app/2026/ "
        "--allow-ip 10.1.0.0/16 --yes".split(),
    )
    assert narrowed.returncode == 0, narrowed.stderr
    after = Scope.build(
        permission="read-only", buckets=[("logs", "app/2026/")], networks=["10.1.0.0/16"]
    )
    assert narrowed.stdout == f"Key {key_id} may now do {after.describe()}.\n"
    assert AccessKey.objects.get(pk=key_id).key_scope == after
    event = AuditEvent.objects.get(action="access_key.scope_narrowed")
    assert event.details["to"] == after.as_api() and event.actor_type == "api_token"

    # Only the given part changes; the rest is kept.
    kept = exc(env, "buckets", "keys", "scope", key_id, "--allow-ip", "10.1.2.0/24", "-y")
    assert kept.returncode == 0, kept.stderr
    assert AccessKey.objects.get(pk=key_id).key_scope == Scope.build(
        permission="read-only", buckets=[("logs", "app/2026/")], networks=["10.1.2.0/24"]
    )

    wider = exc(env, "buckets", "keys", "scope", key_id, "--bucket", "logs", "--yes")
    assert wider.returncode == 1
    assert "A key's scope can only be narrowed" in wider.stderr and "(HTTP 409)" in wider.stderr
    assert AuditEvent.objects.filter(action="access_key.scope_narrowed").count() == 2


def test_a_member_cannot_narrow_an_owners_key_and_an_auditor_cannot_create(
    env_for, owner, member, auditor
):
    owners = created_id(exc(env_for(owner), "buckets", "keys", "create", "ingest"))
    refused = exc(env_for(member), "buckets", "keys", "scope", owners, "--read-only", "--yes")
    assert refused.returncode == 3 and "not allowed" in refused.stderr
    assert AccessKey.objects.get(pk=owners).scope == {}

    auditors = exc(env_for(auditor), "buckets", "keys", "create", "x", "--read-only")
    assert auditors.returncode == 3 and "Auditors cannot create keys" in auditors.stderr
    assert AccessKey.objects.count() == 1
