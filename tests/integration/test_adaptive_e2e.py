"""Adaptive evaluation end to end on the shared Ray cluster: the endpoint's own count of task-model calls
equals what the run recorded, and the distributed run equals the sequential reference."""

from __future__ import annotations

import pytest

from gpo_ray.api import optimize
from gpo_ray.testing import ThreadedFake

from tests.integration.test_e2e_optimize import fake_config, make_config, sequential_results

pytestmark = pytest.mark.usefixtures("ray_cluster")

N_EVAL = N_TEST = 8  # every task of make_config has 8 eval and 8 test examples
ADAPTIVE = dict(candidate_scoring="eval", candidates=4, adaptive_evaluation={"enabled": True, "first_round": 2, "eta": 2})


def test_adaptive_run_counts_every_task_call_and_matches_the_sequential_reference(tmp_path):
    config = make_config(tmp_path, "http://placeholder/v1", **ADAPTIVE)
    with ThreadedFake(fake_config(config)) as fake:
        config = make_config(tmp_path / "x", fake.base_url, **ADAPTIVE).model_copy(update={"cache": False})
        results = optimize(config)
        task_calls = fake.stats()["roles"]["task"]
        reference = sequential_results(config, fake.base_url)

    assert results.tasks == reference
    expected = 0
    saved = 0
    for name, r in results.tasks.items():
        n_test_prompts = 1 if r.best_prompt == r.initial_prompt else 2
        expected += N_EVAL + sum(s.counts["scoring_calls"] for s in r.steps) + n_test_prompts * N_TEST
        saved += sum(s.counts["scoring_calls_full"] - s.counts["scoring_calls"] for s in r.steps)
        for s in r.steps:
            if s.candidates:
                chosen = next(c for c in s.candidates if c.prompt == s.prompt)
                assert chosen.examples == N_EVAL and chosen.score == s.eval_score, (name, s.step)
    assert task_calls == expected
    assert saved > 0
