"""The installed `exc` binary, and aws-cli with the profiles it writes, against a live
portal and S3 gateway."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import urllib.request
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.models import Bucket
from keys import expiry
from keys.models import AccessKey, KeyStatus
from tests.cli_support import (
    AWS,
    EXC,
    EXISTING_CONFIG,
    EXISTING_CREDENTIALS,
    mode,
)
from tests.gateway_stack import gateway, upstream

# --- The installed binary against a live portal --------------------------------------------


def exc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXC), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def aws(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # The endpoint must come from the profile `exc buckets keys configure` wrote.
    assert not any(arg.startswith("--endpoint-url") for arg in args)
    return subprocess.run(
        [str(AWS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def refused_with_403(result: subprocess.CompletedProcess, gateway_url: str, path: str) -> bool:
    """Whether an ``aws --debug`` run got a 403 from the gateway for a GET of ``path``.

    The status and the address only appear in urllib3's debug log line for the request.
    """
    line = rf'{re.escape(gateway_url)} "GET {re.escape(path)}(\?[^"]*)? HTTP/1\.1" 403 '
    return result.returncode != 0 and re.search(line, result.stderr) is not None


@pytest.fixture
def gw(transactional_db, tmp_path_factory, settings):
    """The S3 gateway on the test database, caching behind the Redis version check when
    Redis is configured (as in production), and the portal telling clients to use it."""
    with (
        upstream(tmp_path_factory.mktemp("store")) as store,
        gateway(tmp_path_factory.mktemp("gw"), store, redis_url=settings.REDIS_URL) as running,
    ):
        settings.EXCLOUD_S3_ENDPOINT = running.url
        yield running


def test_the_installed_exc_against_a_live_server(live_server, gw, owner, tmp_path):
    """The issue's end-to-end check: keys made, listed, configured and revoked with the
    installed `exc`, used in between by the real aws CLI through the gateway."""
    assert EXC.exists(), "pip install -e . installs the exc command"
    assert AWS.exists(), "the awscli package installs the aws command"
    out = io.StringIO()
    call_command("create_api_token", "--user", owner.user.email, "--org", "acme", stdout=out)
    token = out.getvalue().strip()
    # Built from nothing, so no AWS_* variable (keys, profile, endpoint) leaks in from outside:
    # exc and aws see only the two files in this HOME.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }
    (tmp_path / "aws-config").write_text(EXISTING_CONFIG)
    (tmp_path / "aws-credentials").write_text(EXISTING_CREDENTIALS)

    login = exc(env, "login", "--token", token, "--api-url", live_server.url)
    assert login.returncode == 0, login.stderr
    assert mode(tmp_path / ".config" / "exc" / "config.json") == 0o600

    created = exc(env, "buckets", "keys", "create", "laptop")
    assert created.returncode == 0, created.stderr
    match = re.fullmatch(
        r"ACCESS_KEY_ID: (EXC[A-Z2-7]{17})\nSECRET_ACCESS_KEY: ([A-Za-z0-9+/]{40})\n",
        created.stdout,
    )
    assert match, created.stdout
    key_id, secret = match.groups()
    assert AccessKey.objects.get(pk=key_id).created_via == "api"

    for args in (("list",), ("list", "--json")):
        listed = exc(env, "buckets", "keys", *args)
        assert listed.returncode == 0, listed.stderr
        assert key_id in listed.stdout and "laptop" in listed.stdout
        assert secret not in listed.stdout + listed.stderr

    configured = exc(env, "buckets", "keys", "configure", key_id, "--profile", "excloud")
    assert configured.returncode == 0, configured.stderr
    assert secret not in configured.stdout + configured.stderr
    config = (tmp_path / "aws-config").read_text()
    credentials = (tmp_path / "aws-credentials").read_text()
    assert "[profile excloud]\n# old Excloud settings\nregion = us-east-1\n" in config
    assert f"endpoint_url = {gw.url}\n" in config
    assert config.startswith("# My AWS setup; do not lose this comment.\n[default]\n")
    assert "; work account\n[profile work]\nregion = us-west-2\n" in config
    assert credentials.startswith(EXISTING_CREDENTIALS)
    assert credentials.endswith(
        f"[excloud]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    assert mode(tmp_path / "aws-config") == 0o600 and mode(tmp_path / "aws-credentials") == 0o600

    # The real aws CLI, on the profile alone, through the gateway.
    bucket = "b-" + key_id.lower()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(100_000))
    made = aws(env, "--profile", "excloud", "s3", "mb", f"s3://{bucket}")
    assert made.returncode == 0, made.stderr
    assert Bucket.objects.get(name=bucket).org == owner.org
    put = aws(env, "--profile", "excloud", "s3", "cp", str(upload), f"s3://{bucket}/x")
    assert put.returncode == 0, put.stderr
    listing = aws(env, "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert listing.returncode == 0, listing.stderr
    assert re.search(rf" {upload.stat().st_size} x\n", listing.stdout), listing.stdout
    download = tmp_path / "download.bin"
    got = aws(env, "--profile", "excloud", "s3", "cp", f"s3://{bucket}/x", str(download))
    assert got.returncode == 0, got.stderr
    assert download.read_bytes() == upload.read_bytes()
    # A presigned URL from the same profile (Signature Version 4, from its s3 block)
    # fetches the object with plain HTTP.
    presigned = aws(env, "--profile", "excloud", "s3", "presign", f"s3://{bucket}/x")
    assert presigned.returncode == 0, presigned.stderr
    assert "X-Amz-Signature=" in presigned.stdout
    with urllib.request.urlopen(presigned.stdout.strip(), timeout=30) as response:
        assert response.read() == upload.read_bytes()

    # --set-default points the default profile (its own, non-Excloud key) at the gateway,
    # which then answers it rather than AWS.
    defaulted = exc(
        env, "buckets", "keys", "configure", key_id, "--profile", "excloud", "--set-default"
    )
    assert defaulted.returncode == 0, defaulted.stderr
    as_default = aws(env, "--debug", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(as_default, gw.url, f"/{bucket}"), as_default.stderr[-3000:]
    assert "InvalidAccessKeyId" in as_default.stderr and "AKIADEFAULT" in as_default.stderr

    refused = exc(env, "buckets", "keys", "delete", key_id)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    deleted = exc(env, "buckets", "keys", "delete", key_id, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert AccessKey.objects.get(pk=key_id).status == KeyStatus.REVOKED
    listed = exc(env, "buckets", "keys", "list", "--json")
    assert [(k["id"], k["status"]) for k in json.loads(listed.stdout)] == [(key_id, "revoked")]

    # The next aws call with the revoked key is refused, with no grace period.
    after = aws(env, "--debug", "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(after, gw.url, f"/{bucket}"), after.stderr[-3000:]
    assert "An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2" in after.stderr
    assert after.stdout == ""

    unknown = exc(env, "buckets", "keys", "delete", "EXCAAAAAAAAAAAAAAAAA", "--yes")
    assert unknown.returncode == 4 and unknown.stderr.startswith("exc: error: not found")
    bad = exc({**env, "EXC_TOKEN": "exc_" + "x" * 40}, "buckets", "keys", "list")
    assert bad.returncode == 3 and "token was refused" in bad.stderr


def test_the_installed_exc_rotates_a_key_behind_a_profile(live_server, gw, owner, tmp_path):
    """`rotate --profile` switches aws to the new key at once; the old key works on until
    the expiry sweep after the overlap, and then gets 403."""
    out = io.StringIO()
    call_command("create_api_token", "--user", owner.user.email, "--org", "acme", stdout=out)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "EXC_TOKEN": out.getvalue().strip(),
        "EXC_API_URL": live_server.url,
    }
    created = exc(env, "buckets", "keys", "create", "--name", "ci")
    assert created.returncode == 0, created.stderr
    old_id, old_secret = re.findall(r": (\S+)\n", created.stdout)
    assert exc(env, "buckets", "keys", "configure", old_id, "--profile", "excloud").returncode == 0
    assert exc(env, "buckets", "keys", "configure", old_id, "--profile", "old").returncode == 0
    bucket = "b-" + old_id.lower()
    assert aws(env, "--profile", "excloud", "s3", "mb", f"s3://{bucket}").returncode == 0

    rotated = exc(
        env, "buckets", "keys", "rotate", old_id, "--profile", "excloud", "--overlap", "1h"
    )
    assert rotated.returncode == 0, rotated.stderr
    match = re.fullmatch(
        r"ACCESS_KEY_ID: (EXC[A-Z2-7]{17})\nSECRET_ACCESS_KEY: ([A-Za-z0-9+/]{40})\n",
        rotated.stdout,
    )
    assert match, rotated.stdout
    new_id, new_secret = match.groups()
    assert new_id != old_id and AccessKey.objects.get(pk=new_id).rotated_from_id == old_id
    credentials = (tmp_path / "aws-credentials").read_text()
    assert f"[excloud]\naws_access_key_id = {new_id}\naws_secret_access_key = {new_secret}\n" in (
        credentials
    )
    assert f"[old]\naws_access_key_id = {old_id}\n" in credentials

    with_new = aws(env, "--debug", "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert with_new.returncode == 0, with_new.stderr[-3000:]
    assert f"Credential={new_id}/" in with_new.stderr
    with_old = aws(env, "--profile", "old", "s3", "ls", f"s3://{bucket}")
    assert with_old.returncode == 0, with_old.stderr

    # The sweep as it runs once the hour's overlap is over.
    assert expiry.expire_due_keys(timezone.now() + timedelta(hours=1, minutes=1)) == 1
    assert AccessKey.objects.get(pk=old_id).status == KeyStatus.EXPIRED
    after = aws(env, "--debug", "--profile", "old", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(after, gw.url, f"/{bucket}"), after.stderr[-3000:]
    still = aws(env, "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert still.returncode == 0, still.stderr
    assert old_secret not in rotated.stdout + rotated.stderr
