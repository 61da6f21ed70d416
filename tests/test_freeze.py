"""The fault tests' freeze(): it returns once every process named has stopped, a process
that exited in the meantime included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.gateway_stack import START_TIMEOUT, _stat_fields, freeze, thaw

# A parent that forks a child which exits at once and is never reaped: a zombie, as a
# PostgreSQL backend becomes when it exits just as its (stopped) postmaster is frozen.
PARENT = """
import os, sys, time
child = os.fork()
if child == 0:
    os._exit(0)
print(child, flush=True)
time.sleep(120)
"""


def _state(pid: int) -> str:
    return _stat_fields(Path(f"/proc/{pid}/stat"))[0]


def test_it_counts_a_zombie_as_frozen_and_stops_the_rest():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + START_TIMEOUT
        while _state(child) != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)

        started = time.monotonic()
        freeze(parent.pid, child)

        assert time.monotonic() - started < START_TIMEOUT / 2
        assert _state(parent.pid) in ("T", "t")
        thaw(parent.pid, child)
        while _state(parent.pid) in ("T", "t"):
            assert time.monotonic() - started < START_TIMEOUT, "the parent never went on"
            time.sleep(0.01)
    finally:
        parent.kill()
        parent.wait()
