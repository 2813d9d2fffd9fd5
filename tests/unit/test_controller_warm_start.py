"""The warm start's stand-ins without Ray: scoring goes to the driver until the actors are ready, then to them (what
the driver already scored is answered from the driver); usage counts both once; a run that started no evaluator
actors keeps scoring in the driver; a failed start stops the run with the start's own error."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gpo_ray.actors.evaluator import ScoreItem
from gpo_ray.controller.warm_start import DeferredMetrics, StartingActors, deferred_handles
from gpo_ray.errors import RunFailed
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind


def item(n: int) -> ScoreItem:
    return ScoreItem(f"prompt {n}", Example(input=f"q{n}", answers=(str(n),)), MetricKind.EXACT_MATCH, "t")


class DriverScoring:
    """What InProcessScoring offers, scoring every item 0.25 and remembering it."""

    def __init__(self) -> None:
        self.scored: dict[tuple, float] = {}

    async def run(self, method: str, chunk, *args):
        for i in chunk:
            self.scored[i.key] = 0.25
        return [0.25] * len(chunk) if method == "score" else [(0.25, "a")] * len(chunk)

    def known(self, i, params, account):
        return (i.key in self.scored, self.scored.get(i.key, 0.0))

    def usage(self, account):
        return {"requests": len(self.scored), "calls": len(self.scored)}


class Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class EvaluatorActor:
    """A Ray handle's shape: scores every item 0.75 and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[ScoreItem] = []

        async def score(chunk, *args):
            self.asked += chunk
            return [0.75] * len(chunk)

        async def usage(*args):
            return {"requests": len(self.asked), "calls": len(self.asked)}

        self.score = Remote(score)
        self.usage = Remote(usage)


def started_with(evaluators: list) -> tuple[StartingActors, threading.Event]:
    go = threading.Event()

    def start(ray_up, stack):
        go.wait(10)
        ray_up()
        return ("memory", [], evaluators)

    return StartingActors(start), go


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_scoring_moves_from_the_driver_to_the_actor_once_it_is_ready_and_usage_counts_both_once():
    actor = EvaluatorActor()
    starting, go = started_with([actor])
    local = DriverScoring()
    _, _, (evaluator,) = deferred_handles(starting, refiners=0, evaluators=1, local=local)

    async def scenario():
        starting.begin()
        before = await evaluator.score.remote([item(1), item(2)])
        go.set()
        await starting.ready()
        after = await evaluator.score.remote([item(2), item(3)])  # item 2 was scored by the driver
        return before, after, await evaluator.usage.remote()

    before, after, usage = asyncio.run(scenario())
    starting.finish()
    starting.close()
    assert before == [0.25, 0.25]
    assert after == [0.25, 0.75], "an item the driver scored is not asked again"
    assert [i.key for i in actor.asked] == [item(3).key]
    assert usage == {"requests": 3, "calls": 3}


def test_a_run_without_evaluator_actors_keeps_scoring_in_the_driver():
    starting, go = started_with([])
    go.set()
    local = DriverScoring()
    _, _, (evaluator,) = deferred_handles(starting, refiners=0, evaluators=1, local=local)

    async def scenario():
        starting.begin()
        await starting.ready()
        return await evaluator.score.remote([item(1)]), await evaluator.usage.remote()

    scores, usage = asyncio.run(scenario())
    starting.finish()
    starting.close()
    assert scores == [0.25] and usage == {"requests": 1, "calls": 1}


def test_a_failed_start_stops_the_run_with_the_start_s_error_even_when_a_stand_in_saw_it_first():
    def start(ray_up, stack):
        raise RunFailed("cannot start a local Ray cluster: boom")

    starting = StartingActors(start)
    memory, _, _ = deferred_handles(starting, refiners=0, evaluators=1, local=DriverScoring())

    async def run():
        try:
            await memory.add.remote([])
        except Exception as e:  # what step_done does with a memory error
            raise RunFailed(f"cannot store step 0: {e}") from None
        await asyncio.sleep(60)

    async def scenario():
        starting.begin()
        return await starting.supervise(run())

    with pytest.raises(RunFailed, match=r"^cannot start a local Ray cluster: boom$"):
        asyncio.run(scenario())
    assert starting.finish() is None
    starting.close()


def test_metrics_told_before_ray_is_up_are_passed_on_in_order_once_it_is():
    told: list[tuple] = []

    class Target:
        def inc(self, name, value=1.0, **tags):
            told.append(("inc", name, value, tags))

        def set(self, name, value, **tags):
            told.append(("set", name, value, tags))

        def observe(self, name, value, **tags):
            told.append(("observe", name, value, tags))

    held = DeferredMetrics(None)
    held.inc("gpo_llm_requests_total", 2)
    held.set("gpo_eval_score", 0.5, task="t")
    assert told == []
    import gpo_ray.controller.warm_start as ws

    original = ws.metrics_for
    ws.metrics_for = lambda context, **tags: Target()
    try:
        held.attach()
    finally:
        ws.metrics_for = original
    held.set("gpo_eval_score", 0.75, task="t")
    assert told == [("inc", "gpo_llm_requests_total", 2, {}), ("set", "gpo_eval_score", 0.5, {"task": "t"}),
                    ("set", "gpo_eval_score", 0.75, {"task": "t"})]


class DriverGeneration:
    """What InProcessGeneration offers: answers "driver" and counts its requests."""

    def __init__(self) -> None:
        self.requests = 0

    async def run(self, method, *args):
        self.requests += 1
        return f"driver {method}"

    def usage(self, account):
        return {"requests": self.requests}


class RefinerActor:
    """A Ray handle's shape: answers "actor" and counts its requests."""

    def __init__(self) -> None:
        self.requests = 0

        async def generate(*args):
            self.requests += 1
            return "actor generate"

        async def usage(*args):
            return {"requests": self.requests}

        self.generate = Remote(generate)
        self.usage = Remote(usage)


def test_generation_moves_from_the_driver_to_the_actors_once_they_are_ready_and_usage_counts_both_once():
    actors = [RefinerActor(), RefinerActor()]
    go = threading.Event()

    def start(ray_up, stack):
        go.wait(10)
        ray_up()
        return ("memory", actors, [])

    starting = StartingActors(start)
    local = DriverGeneration()
    _, refiners, _ = deferred_handles(starting, refiners=2, evaluators=0, local=DriverScoring(), generation=local)

    async def scenario():
        starting.begin()
        before = [await r.generate.remote("request") for r in refiners]
        usage_before = [await r.usage.remote() for r in refiners]
        go.set()
        await starting.ready()
        after = [await r.generate.remote("request") for r in refiners]
        return before, usage_before, after, [await r.usage.remote() for r in refiners]

    before, usage_before, after, usage = asyncio.run(scenario())
    starting.finish()
    starting.close()
    assert before == ["driver generate"] * 2 and after == ["actor generate"] * 2
    assert usage_before == [{"requests": 2}, {}], "the driver's requests are counted by one stand-in only"
    assert usage == [{"requests": 3}, {"requests": 1}]
