"""WaitLimit: one timer bounding each of many waits."""

from __future__ import annotations

import asyncio

import pytest

from gateway.asgi_io import WaitLimit

LIMIT = 0.2


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_wait_within_the_limit_answers_its_result():
    async def main():
        limit = WaitLimit(LIMIT)
        results = [await limit.wait(asyncio.sleep(LIMIT / 20, result=n)) for n in range(40)]
        limit.close()
        return results

    # Forty waits that together last past the limit: each is bounded, not their sum.
    assert run(main()) == list(range(40))


def test_a_wait_past_the_limit_raises_timeout_and_the_next_wait_works():
    async def main():
        limit = WaitLimit(LIMIT)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await limit.wait(asyncio.sleep(60))
        waited = loop.time() - started
        after = await limit.wait(asyncio.sleep(0, result="after"))
        limit.close()
        return waited, after

    waited, after = run(main())
    assert LIMIT <= waited < 60
    assert after == "after"


def test_a_wait_after_a_long_pause_has_its_own_full_limit():
    async def main():
        limit = WaitLimit(LIMIT)
        await limit.wait(asyncio.sleep(0))
        # Not waiting: the limit does not run on the time between waits.
        await asyncio.sleep(LIMIT * 2)
        return await limit.wait(asyncio.sleep(LIMIT / 2, result="in time"))

    assert run(main()) == "in time"


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def main():
        limit = WaitLimit(60)
        task = asyncio.create_task(limit.wait(asyncio.sleep(60)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        limit.close()

    run(main())


def test_only_one_wait_at_a_time():
    async def main():
        limit = WaitLimit(60)
        first = asyncio.create_task(limit.wait(asyncio.sleep(0.05)))
        await asyncio.sleep(0)
        second = limit.wait(asyncio.sleep(0))
        with pytest.raises(RuntimeError):
            await second
        await first
        limit.close()

    run(main())
