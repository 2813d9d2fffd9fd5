"""The fair scheduler: a task with much work cannot starve one with little; slots bound concurrency."""

import asyncio

from gpo_ray.controller.fair import FairScheduler


async def test_small_task_is_not_starved_by_a_big_one():
    in_flight = 0
    peak = 0

    async def worker(item):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return item * 2

    sched = FairScheduler([worker], slots_per_worker=2)
    big = [sched.submit("big", i) for i in range(40)]
    await asyncio.sleep(0)  # the big task's items are queued first
    small = [sched.submit("small", 100 + i) for i in range(3)]
    results = await asyncio.gather(*big, *small)
    await sched.close()

    assert results == [i * 2 for i in range(40)] + [200, 202, 204]
    assert peak <= 2
    order = sched.dispatch_order
    last_small = max(i for i, k in enumerate(order) if k == "small")
    # Round robin: the small task finishes within the first few dispatches, not after all 40 big items.
    assert last_small < 10, order[:12]


async def test_worker_errors_reach_the_submitter_and_the_scheduler_keeps_going():
    async def worker(item):
        if item == "bad":
            raise RuntimeError("boom")
        return item

    sched = FairScheduler([worker, worker])
    bad = sched.submit("a", "bad")
    good = sched.submit("b", "ok")
    assert await good == "ok"
    try:
        await bad
    except RuntimeError as e:
        assert "boom" in str(e)
    else:
        raise AssertionError("the error was swallowed")
    assert await sched.submit("a", "again") == "again"
    await sched.close()
