"""Adaptive evaluation (successive halving on the eval split): its bookkeeping and what the loop records."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from gpo_ray.config import OptimizerSettings, RunConfig, ScheduleConfig
from gpo_ray.core.adaptive import halving_calls, round_sizes, successive_halving
from gpo_ray.core.evaluation import TaskModelParams, mean
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task
from gpo_ray.core.reference import InProcessServices
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ScriptedLLM

from tests.unit.test_core_loop import bag_of_words, optimizer_config, task_model_config


class Oracle:
    """Candidate i answers example j right with probability accuracy[i]; every (i, j) asked is recorded."""

    def __init__(self, accuracy: list[float], n_examples: int, *, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.table = [[1.0 if rng.random() < a else 0.0 for _ in range(n_examples)] for a in accuracy]
        self.asked: list[tuple[int, int]] = []

    async def __call__(self, which, start, stop):
        out = []
        for i in which:
            self.asked.extend((i, j) for j in range(start, stop))
            out.append(self.table[i][start:stop])
        return out


def test_round_sizes_grow_by_eta_and_end_at_the_split():
    assert round_sizes(100, first_round=8, eta=2) == [8, 16, 32, 64, 100]
    assert round_sizes(27, first_round=3, eta=3) == [3, 9, 27]
    assert round_sizes(5, first_round=8, eta=2) == [5]


async def test_halving_counts_every_call_once_and_fully_scores_the_winner():
    accuracy = [0.2, 0.3, 0.25, 0.95, 0.1, 0.3, 0.35, 0.2]
    oracle = Oracle(accuracy, 100)
    out = await successive_halving(8, 100, oracle, first_round=8, eta=2)

    assert out.calls == len(oracle.asked) == halving_calls(8, 100, first_round=8, eta=2)
    assert len(set(oracle.asked)) == len(oracle.asked), "no example is scored twice for one candidate"
    assert out.full_calls == 800 and out.calls_saved == 800 - out.calls > 0
    assert out.fully_scored(100) == [3], "the clearly best candidate survives and gets the whole split"
    assert out.per_example[3] == oracle.table[3]
    assert [len(s) for s in out.per_example] == [len(set(j for i, j in oracle.asked if i == c)) for c in range(8)]
    assert [n for _, n in out.rounds] == [8, 4, 2, 1]


async def test_first_round_as_large_as_the_split_is_full_evaluation():
    oracle = Oracle([0.5, 0.6, 0.7], 20)
    out = await successive_halving(3, 20, oracle, first_round=20, eta=2)
    assert out.calls == out.full_calls == 60
    assert out.fully_scored(20) == [0, 1, 2]


async def test_ties_go_to_the_callers_preference():
    oracle = Oracle([1.0, 1.0, 1.0, 1.0], 16)
    out = await successive_halving(4, 16, oracle, first_round=4, eta=2, tiebreak=[(3, "c"), (1, "b"), (1, "a"), (2, "d")])
    assert out.fully_scored(16) == [2]


def example_task():
    (task,) = resolve_tasks(["example/arithmetic"], data_dir=None)
    return task


async def _run(settings):
    task_llm = ScriptedLLM(task_model_config())
    services = InProcessServices(optimizer_llm=ScriptedLLM(optimizer_config()), task_llm=task_llm, embed=bag_of_words,
                                 task_params=TaskModelParams())
    result = await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run()
    return result, task_llm.calls["task"]


def loop_settings(**kw):
    base = dict(epochs=2, batch_size=4, candidates=4, retrieval="recency", initial_prompt="Answer the question.",
                schedule=ScheduleConfig(initial=12, final=4), candidate_scoring="eval")
    base.update(kw)
    return OptimizerSettings(**base)


async def test_adaptive_loop_records_its_calls_and_scores_the_chosen_prompt_on_the_full_split():
    settings = loop_settings(adaptive_evaluation={"enabled": True, "first_round": 2, "eta": 2})
    result, calls = await _run(settings)
    task = example_task()
    n_eval, n_test = len(task.eval), len(task.test)

    # Every task-model call is accounted for: the initial eval, the steps' scoring, the two test scores.
    test_calls = n_test * (1 if result.best_prompt == result.initial_prompt else 2)
    assert calls == n_eval + sum(s.counts["scoring_calls"] for s in result.steps) + test_calls
    assert sum(s.counts["scoring_calls"] for s in result.steps) < sum(s.counts["scoring_calls_full"] for s in result.steps)

    scorer = ScriptedLLM(task_model_config())
    for s in result.steps:
        chosen = [c for c in s.candidates if c.prompt == s.prompt]
        assert chosen and chosen[0].examples == n_eval, "the chosen prompt is scored on the full eval split"
        if len(s.candidates) > 1:
            assert sum(c.examples == n_eval for c in s.candidates) == 1, "losers stop early"
        assert s.counts["scoring_calls"] == sum(c.examples for c in s.candidates)
        # Its recorded eval score is the plain eval score of that prompt.
        services = InProcessServices(optimizer_llm=None, task_llm=scorer, embed=bag_of_words, task_params=TaskModelParams())
        (per_example,) = await services.score(task, [s.prompt], task.eval)
        assert s.eval_score == mean(per_example)


async def test_full_eval_scoring_makes_no_extra_call_for_the_chosen_prompt_and_matches_the_plan():
    settings = loop_settings()
    result, calls = await _run(settings)
    task = example_task()
    for s in result.steps:
        assert all(c.examples == len(task.eval) for c in s.candidates)
        assert s.counts["scoring_calls"] == s.counts["scoring_calls_full"] == len(s.candidates) * len(task.eval)
    # Exactly the initial eval, every candidate on the full split, the test scores; the plan is the upper bound
    # (it counts `candidates` per step; de-duplication leaves fewer).
    n_eval, n_test = len(task.eval), len(task.test)
    test_calls = n_test * (1 if result.best_prompt == result.initial_prompt else 2)
    assert calls == n_eval + sum(len(s.candidates) * n_eval for s in result.steps) + test_calls
    plan = plan_task(task, settings, optimizer_max_tokens=64, task_max_tokens=64)
    assert calls <= plan.task_model_calls
    assert plan.task_model_calls == n_eval + len(result.steps) * settings.candidates * n_eval + 2 * n_test


async def test_adaptive_and_full_evaluation_agree_when_one_candidate_is_clearly_best():
    full, _ = await _run(loop_settings())
    adaptive, _ = await _run(loop_settings(adaptive_evaluation={"enabled": True, "first_round": 4, "eta": 2}))
    assert adaptive.best_eval_score >= full.initial_eval_score
    assert adaptive.steps[0].prompt == full.steps[0].prompt


def test_adaptive_evaluation_needs_eval_scoring():
    with pytest.raises(ValidationError, match="candidate_scoring: eval"):
        RunConfig(tasks=["x"], optimizer={"adaptive_evaluation": {"enabled": True}})
    with pytest.raises(ValidationError):
        RunConfig(tasks=["x"], optimizer={"candidate_scoring": "eval", "adaptive_evaluation": {"eta": 1}})
