"""The metric-cost benchmark's parts (benchmarks/metric_cost.py, issue 24): its cases score as meant, and the summary's
arithmetic. Fast: a handful of scorings; the benchmark's own measuring is not part of the tests."""

from __future__ import annotations

import pytest

from benchmarks.metric_cost import BASELINE, cases, cpu_per_call, markdown, summarize
from gpo_ray.core.evaluation import MetricFailure, judge


def test_every_case_scores_its_replies_without_a_metric_error_and_tells_right_from_wrong():
    names = [c.name for c in cases()]
    assert names[0] == BASELINE and len(set(names)) == len(names)
    for case in cases():
        verdicts = [judge(case.metric, reply, example) for reply, example in case.pairs]
        assert not any(isinstance(v, MetricFailure) for v in verdicts), case.name
        scores = [v.score for v in verdicts]
        assert scores[0] > min(scores) and all(0.0 <= s <= 1.0 for s in scores), (case.name, scores)


def test_cpu_per_call_divides_the_clock_by_the_calls():
    ticks = iter([10.0, 10.5])
    calls = []
    assert cpu_per_call(lambda: calls.append(1), 100, clock=lambda: next(ticks)) == pytest.approx(0.005)
    assert len(calls) == 100


def test_summary_takes_each_rounds_ratio_to_the_baseline_of_that_round():
    rounds = [{"exact_match": 10e-6, "python": 5e-6}, {"exact_match": 20e-6, "python": 8e-6},
              {"exact_match": 12e-6, "python": 6e-6}]
    em, py = summarize(rounds)
    assert em["metric"] == "exact_match" and em["ratio_min"] == em["ratio_max"] == 1.0
    assert py["us_min"] == pytest.approx(5.0) and py["us_median"] == pytest.approx(6.0) and py["us_max"] == 8.0
    assert (py["ratio_min"], py["ratio_median"], py["ratio_max"]) == pytest.approx((0.4, 0.5, 0.5))
    table = markdown([em, py], rounds=3)
    assert table.splitlines()[0].startswith("| metric | CPU µs per scored example, median (range over 3 rounds)")
    assert "| python | 6.0 (5.0 to 8.0) | 0.50 (0.40 to 0.50) |" in table
