"""The gateway's limits are settings read from the environment; a value that is not a
whole number of at least 1 stops the process at start-up, naming the variable."""

from __future__ import annotations

import os
import subprocess

import pytest

from excloud_portal import devenv
from tests.gateway_stack import BIN, REPO

LIMITS = [
    "EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS",
    "EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS",
    "EXCLOUD_S3_BODY_TIMEOUT_SECONDS",
    "EXCLOUD_S3_HEAD_TIMEOUT_SECONDS",
    "EXCLOUD_S3_KEEPALIVE_SECONDS",
    "EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS",
    "EXCLOUD_S3_MAX_CONCURRENCY",
]
READ = "from django.conf import settings; print(settings.{name})"


def _settings(tmp_path, name: str, value: str) -> subprocess.CompletedProcess:
    env = {key: v for key, v in os.environ.items() if not key.startswith("EXCLOUD_")}
    env.update({name: value, "EXCLOUD_VAR_DIR": str(tmp_path)})
    devenv.load(env)
    return subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", READ.format(name=name)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", LIMITS)
def test_it_reads_each_limit_from_the_environment(tmp_path, name):
    done = _settings(tmp_path, name, "7")

    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "7"


@pytest.mark.parametrize("value", ["0", "-1", "ten"])
@pytest.mark.parametrize("name", LIMITS)
def test_it_refuses_a_limit_that_is_not_a_positive_whole_number(tmp_path, name, value):
    done = _settings(tmp_path, name, value)

    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert name in done.stderr
