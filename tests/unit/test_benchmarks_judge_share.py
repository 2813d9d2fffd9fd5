"""The judge-share benchmark's parts (benchmarks/judge_share.py, issue 24): the busy-time arithmetic, the per-role
figures, and the Python metric that stands in for the judge giving the scripted judge's verdicts. Fast: no Ray, no
endpoint (tests/integration/test_benchmarks_judge_share_run.py runs a tiny benchmark)."""

from __future__ import annotations

import pytest

from benchmarks.judge_share import JUDGE, busy_seconds, phrases, role_figures
from benchmarks.judge_share_metric import holds_answer
from gpo_ray.config import JudgeMetric
from gpo_ray.tasks.judge import JudgeParams, judge_request, read_judgement
from gpo_ray.tasks.metric_specs import example_fields
from gpo_ray.tasks.types import Example
from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.scripted import judge_answer


def test_busy_time_is_the_union_of_a_roles_intervals_and_alone_is_when_no_other_role_is_in_service():
    intervals = [(0.0, 2.0, "judge"), (1.0, 3.0, "task_model"), (1.5, 2.5, "judge"), (5.0, 6.0, "judge"),
                 (9.0, 12.0, "task_model"), (-1.0, 0.5, "optimizer")]
    busy, alone, anything = busy_seconds(intervals, start=0.0, end=10.0)
    assert busy == pytest.approx({"judge": 3.5, "task_model": 3.0, "optimizer": 0.5})  # clipped to [0, 10]
    # judge alone: 0.5-1.0 and 5-6; task_model alone: 2.5-3.0 and 9-10; 0-0.5 judge and optimizer both
    assert alone == pytest.approx({"judge": 1.5, "task_model": 1.5})
    assert anything == pytest.approx(5.0)  # 0-3, 5-6, 9-10
    assert busy_seconds([], start=0.0, end=1.0) == ({}, {}, 0.0)


def test_role_figures_give_each_roles_share_of_calls_tokens_and_wall_time():
    usage = {"task_model": {"calls": 6, "requests": 6, "prompt_tokens": 60, "completion_tokens": 20},
             "optimizer": {"calls": 2, "requests": 2, "prompt_tokens": 100, "completion_tokens": 20},
             "judge": {"calls": 6, "requests": 5, "cache_hits": 1, "prompt_tokens": 150, "completion_tokens": 50}}
    served = {"task": 6, "optimizer": 1, "feedback": 1, "judge": 5}
    timeline = [(10.0, 11.0, "task"), (11.0, 12.0, "judge"), (10.5, 11.5, "feedback"), (13.0, 14.0, "judge")]
    roles = role_figures(usage, served, timeline, started=9.0, wall=8.0)
    assert list(roles) == ["task_model", "optimizer", "judge"]
    assert sum(r["call_share"] for r in roles.values()) == pytest.approx(1.0)
    assert roles["judge"]["call_share"] == pytest.approx(6 / 14) and roles["judge"]["token_share"] == pytest.approx(0.5)
    assert roles["optimizer"]["endpoint_requests"] == 2  # the feedback request is the optimizer role's
    assert roles["judge"]["busy_s"] == pytest.approx(2.0) and roles["judge"]["busy_share"] == pytest.approx(0.25)
    assert roles["judge"]["busy_share_of_span"] == pytest.approx(0.5)  # the span: 10 to 14
    assert roles["judge"]["alone_s"] == pytest.approx(1.5)  # 11.5-12 and 13-14
    assert roles["task_model"]["alone_s"] == pytest.approx(0.5)


@pytest.mark.parametrize("reply", ["The answer is 44.", "44", "It is 440.", "Forty-four", "1044 - no: 44!", ""])
def test_the_python_stand_in_gives_the_scripted_judges_verdicts(reply):
    example = Example("What is 40 + 4?", ("44",), id="eval:0")
    metric = JudgeMetric.model_validate(JUDGE)
    asked = judge_request(metric, example, reply, params=JudgeParams())
    judged = read_judgement(judge_answer(asked, config=FakeLLMConfig()), scale=metric.scale)
    assert holds_answer(example_fields(example), reply) == (judged.score, judged.feedback)


def test_many_phrases_are_distinct_and_a_few_are_the_stems():
    assert len(set(phrases(200))) == 200
    assert phrases(3) == ["Think step by step.", "Work carefully.", "Be concise."]
