"""Work raced in threads, each on a database connection of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_in_threads(
    target: Callable[[threading.Barrier], Any], count: int = 2, timeout: float = 60
) -> list:
    """target(barrier) in ``count`` threads, which wait on the barrier just before the
    part that races; each thread's return value, or the exception it raised, in thread
    order. Fails when a thread is still running after ``timeout`` seconds."""
    barrier = threading.Barrier(count, timeout=timeout)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = target(barrier)
        except Exception as error:  # noqa: BLE001 - the caller reads it from the results
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), f"a thread was still running after {timeout} s"
    return results


def at_once(call: Callable[[], Any], count: int = 2, timeout: float = 60) -> list:
    """call() in ``count`` threads started together; their return values. Fails with the
    exceptions when any raised."""

    def target(barrier: threading.Barrier) -> Any:
        barrier.wait()
        return call()

    results = run_in_threads(target, count, timeout)
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    return results
