"""usage.json and the budget count every call once however the usage ledger's refreshes overlap.

Several callers refresh usage (the every-second keeper, the deferred state write, a budget's per-step check, the
run's end). Two refreshes at once once took their answers in the opposite order to the one they asked in: an
actor's older, lower answer taken after its newer one looked like a restart (UsageAcrossRestarts), and the newer
answer was carried over and counted twice (issue 23: 39 optimizer calls in usage.json, 36 sent and exported)."""

from __future__ import annotations

import asyncio
import random

import structlog

from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.controller.ledger import UsageLedger


class Remote:
    def __init__(self, fn) -> None:
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class Actor:
    """A Ray handle's shape: `usage()` reads the counts when asked, and answers when the test lets it (`hold`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False
        self.held: list[asyncio.Future] = []

        async def usage(*args):
            answer = {"calls": self.calls, "requests": self.calls, "prompt_tokens": 10 * self.calls}
            if self.hold:
                gate = asyncio.get_running_loop().create_future()
                self.held.append(gate)
                await gate
            return answer

        self.usage = Remote(usage)

    def call(self, n: int = 1) -> None:
        self.calls += n

    def release(self) -> None:
        held, self.held = self.held, []
        for gate in held:
            gate.set_result(None)


def ledger(refiners: list[Actor], evaluators: list[Actor]) -> UsageLedger:
    role = LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m")
    config = RunConfig(tasks=["example/arithmetic"], task_model=role, optimizer_model=role,
                       tracking={"ray_metrics": False, "mlflow": False})
    return UsageLedger(config, before={}, refiners=refiners, evaluators=evaluators, log=structlog.get_logger())


async def settle() -> None:
    """Let every task that can go on without the test go on (loop iterations, not time)."""
    for _ in range(50):
        await asyncio.sleep(0)


def test_an_older_answer_taken_after_a_newer_one_is_not_counted_twice() -> None:
    refiner, evaluator = Actor(), Actor()
    c = ledger([refiner], [evaluator])

    async def scenario() -> dict:
        evaluator.hold = True
        first = asyncio.ensure_future(c.refresh())  # reads the refiner at 0, then waits on the evaluator
        await settle()
        assert evaluator.held, "the first refresh waits for the evaluator's answer"
        refiner.call(3)  # a step's candidates
        evaluator.hold = False
        second = asyncio.ensure_future(c.refresh())  # would read the refiner at 3 and finish first
        await settle()
        evaluator.release()
        await asyncio.gather(first, second)
        return await c.refresh()

    usage = asyncio.run(scenario())
    assert usage["optimizer"]["calls"] == refiner.calls == 3
    assert usage["optimizer"]["prompt_tokens"] == 30


async def interleaved(seed: int, c: UsageLedger, refiners: list[Actor], evaluators: list[Actor]) -> None:
    """Calls, refreshes, held and late answers in a random order; what every refresh said is checked as it goes."""
    rng = random.Random(seed)
    actors = refiners + evaluators
    refreshes: list[asyncio.Future] = []
    seen: list[dict] = []

    async def refresh() -> None:
        seen.append(await c.refresh())

    for _ in range(40):
        action = rng.random()
        if action < 0.4:
            rng.choice(actors).call(rng.randint(1, 3))
        elif action < 0.6:
            a = rng.choice(actors)
            a.hold = not a.hold
        elif action < 0.8:
            refreshes.append(asyncio.ensure_future(refresh()))
        else:
            rng.choice(actors).release()
        await asyncio.sleep(0)
        for role, group in (("optimizer", refiners), ("task_model", evaluators)):
            counted = sum(a.calls for a in group)
            assert all(u[role].get("calls", 0) <= counted for u in seen), (seed, role, "counted twice")
    for a in actors:
        a.hold = False
        a.release()
    await asyncio.gather(*refreshes)
    final = await c.refresh()
    for role in ("optimizer", "task_model"):
        calls = [u[role].get("calls", 0) for u in seen]
        assert calls == sorted(calls), (seed, role, "usage went down")
    assert final["optimizer"]["calls"] == sum(a.calls for a in refiners), seed
    assert final["task_model"]["calls"] == sum(a.calls for a in evaluators), seed


def test_overlapping_refreshes_in_any_order_count_what_the_actors_counted() -> None:
    """Random interleavings of calls, refreshes and late answers: every refresh's usage is at most what the actors
    counted, never goes down, and the last one equals it."""
    for seed in range(30):
        refiners, evaluators = [Actor(), Actor()], [Actor(), Actor()]
        c = ledger(refiners, evaluators)
        asyncio.run(interleaved(seed, c, refiners, evaluators))


def test_the_budget_is_spent_at_its_calls_or_tokens() -> None:
    role = LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m")
    config = RunConfig(tasks=["example/arithmetic"], task_model=role, optimizer_model=role,
                       tracking={"ray_metrics": False, "mlflow": False}, budget={"max_calls": 10})
    before = {"optimizer": {"requests": 4, "prompt_tokens": 40}, "task_model": {"requests": 5}}
    refiner = Actor()
    book = UsageLedger(config, before=before, refiners=[refiner], evaluators=[], log=structlog.get_logger())
    assert book.budget_set() and not book.budget_spent() and book.total_calls() == 9  # a resume counts on
    refiner.call()
    asyncio.run(book.refresh())
    assert book.total_calls() == 10 and book.total_tokens() == 50 and book.budget_spent()
    unlimited = UsageLedger(config.model_copy(update={"budget": config.budget.model_copy(update={"max_calls": None})}),
                            before=before, refiners=[], evaluators=[], log=structlog.get_logger())
    assert not unlimited.budget_set() and not unlimited.budget_spent()
