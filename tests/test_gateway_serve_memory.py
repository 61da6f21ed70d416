"""The gateway process keeps freed body-sized buffers for reuse (gateway.serve's
reuse_freed_memory), so streaming pieces through it does not fault in fresh pages for
each one."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from tests.gateway_stack import REPO

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("c") != "libc.so.6", reason="the setting is glibc's"
)

# Pieces of 64 KiB to 1 MiB, two held at a time, as a streamed answer passes through;
# prints the page faults of the second of two passes.
CHURN = """
import random, resource, sys
from gateway.serve import reuse_freed_memory
if sys.argv[1] == "reuse":
    reuse_freed_memory()
rng = random.Random(1)
sizes = [rng.randrange(64 * 1024, 1024 * 1024) for _ in range(300)]
def churn():
    held = []
    for size in sizes:
        held.append(b"x" * size)
        if len(held) > 2:
            held.pop(0)
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_it_reuses_freed_piece_buffers_instead_of_faulting_in_new_pages():
    default = page_faults("default")
    reused = page_faults("reuse")

    # By default nearly every piece maps fresh pages (300 pieces of about 130 pages).
    assert default > 300 * 10
    assert reused < default / 100
