"""The gateway and the embedded object store as `make run` starts them (Procfile.dev's
gateway and objects lines), on the embedded default: SQLite, no Redis, upstream
credentials generated into EXCLOUD_VAR_DIR/dev.env. A key made in the portal works with boto3
and stops working on the request after its revoke."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from excloud_portal import devenv
from tests.test_embedded_stack import MANAGE, PYTHON, REPO, _answers, _free_port, _wait_for, stack
from tests.test_gateway_e2e import s3_client

__all__ = ["stack"]

MAKE_KEY = """
from accounts.models import Membership, Organization, Role, User
from audit.trail import Actor
from keys.services import create_key
user = User.objects.get(email="{email}")
membership = Membership.objects.get(user=user, org__slug="demo")
created = create_key(membership, Actor.for_user(user), "gateway-smoke")
print("KEY", created.key.id, created.secret)
"""
NARROW_KEY = """
from accounts.models import Membership
from audit.trail import Actor
from keys.models import AccessKey
from keys.scope import Scope
from keys.services import narrow_key_scope
key = AccessKey.objects.get(pk="{key_id}")
membership = Membership.objects.get(user__email="{email}", org=key.org)
scope = Scope.build(permission="read-only", buckets=["{bucket}"])
narrow_key_scope(membership, Actor.for_user(membership.user), key, scope)
"""
REVOKE_KEY = """
from accounts.models import Membership
from audit.trail import Actor
from keys.models import AccessKey
from keys.services import revoke_key
key = AccessKey.objects.get(pk="{key_id}")
membership = Membership.objects.get(user__email="{email}", org=key.org)
revoke_key(membership, Actor.for_user(membership.user), key)
"""


def _procfile_command(name: str) -> list[str]:
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            program, *args = command.split()
            # The stack runs in an empty directory: the venv is found from the repository.
            return [str(REPO / program) if "/" in program else program, *args]
    raise AssertionError(f"no {name} in Procfile.dev")


def _serve(stack) -> tuple[str, str, str, str]:
    """The embedded stack's gateway and store started as `make run` starts them, with a
    key made in the portal: (gateway URL, key ID, secret, the demo user's email)."""
    stack.run(PYTHON, MANAGE, "migrate", "--noinput")
    demo = stack.run(PYTHON, MANAGE, "demo_setup")
    email = re.search(r"Sign in as:\s+(\S+)", demo).group(1)
    made = stack.run(PYTHON, MANAGE, "shell", "-c", MAKE_KEY.format(email=email))
    key_id, secret = re.search(r"KEY (\S+) (\S+)", made).groups()

    objects_port, gateway_port = _free_port(), _free_port()
    stack.env["EXCLOUD_S3_UPSTREAM_URL"] = f"http://127.0.0.1:{objects_port}"
    objects = stack.start("objects", *_procfile_command("objects"))
    gateway_args = _procfile_command("gateway")
    gateway_args[gateway_args.index("--port") + 1] = str(gateway_port)
    gateway = stack.start("gateway", *gateway_args)
    _wait_for("object store", lambda: "Starting s3 server" in stack.log("objects"), stack, objects)
    url = f"http://127.0.0.1:{gateway_port}"
    _wait_for(
        "gateway",
        lambda: _answers(url) or "Uvicorn running" in stack.log("gateway"),
        stack,
        gateway,
    )
    return url, key_id, secret, email


def test_it_serves_s3_on_the_embedded_default(stack, tmp_path):
    var = tmp_path / "var"
    url, key_id, secret, email = _serve(stack)
    s3 = s3_client(url, key_id, secret)
    s3.create_bucket(Bucket="smoke-bucket")
    s3.put_object(Bucket="smoke-bucket", Key="hello.txt", Body=b"embedded")
    assert s3.get_object(Bucket="smoke-bucket", Key="hello.txt")["Body"].read() == b"embedded"
    assert (var / "objects" / "smoke-bucket" / "hello.txt").read_bytes() == b"embedded"
    assert stat.S_IMODE((var / "dev.env").stat().st_mode) == 0o600
    dev_env = devenv.read(var / "dev.env")
    for secret in ("EXCLOUD_EMBEDDED_S3_ACCESS_KEY_ID", "EXCLOUD_EMBEDDED_S3_SECRET_ACCESS_KEY"):
        assert dev_env[secret] == stack.env[secret]
    # The store's secret is in its environment, not on its command line, which every user
    # of the machine can read (ps).
    command_line = Path(f"/proc/{stack.procs['objects'].pid}/cmdline").read_bytes()
    assert b"rclone" in command_line and b"serve" in command_line
    assert stack.env["EXCLOUD_EMBEDDED_S3_SECRET_ACCESS_KEY"].encode() not in command_line

    stack.run(PYTHON, MANAGE, "shell", "-c", REVOKE_KEY.format(key_id=key_id, email=email))
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="smoke-bucket", Key="hello.txt")
    assert excinfo.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_it_applies_a_narrowed_scope_from_the_next_request_on_the_embedded_default(stack):
    url, key_id, secret, email = _serve(stack)
    s3 = s3_client(url, key_id, secret)
    for bucket in ("narrow-bucket", "other-bucket"):
        s3.create_bucket(Bucket=bucket)
    # Served from the gateway's cache after the first request.
    for index in range(3):
        s3.put_object(Bucket="narrow-bucket", Key=f"k{index}", Body=b"before")

    narrow = NARROW_KEY.format(key_id=key_id, email=email, bucket="narrow-bucket")
    stack.run(PYTHON, MANAGE, "shell", "-c", narrow)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="narrow-bucket", Key="k9", Body=b"after")
    assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
    assert "read-only on narrow-bucket" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket="other-bucket")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.get_object(Bucket="narrow-bucket", Key="k0")["Body"].read() == b"before"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["narrow-bucket"]
