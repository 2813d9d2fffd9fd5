"""Every optimizer and task-model call counted once on every path a user reads (issue 23): usage.json, results.json's
usage, the report's usage table and the exported gpo_llm_* metrics agree with each other and with what the fake
endpoint received, in the cases that make a run's calls differ from `steps x candidates`:

- re-asked candidates (`edit_enforcement: strict` re-asks over-budget ones, `max_rerequests` rounds);
- repeated candidates (the paper preset's `repeated_candidates: keep_score`; the fake repeats its few phrases);
- a warm start whose first steps run in the driver, with the driver's metrics held until Ray is up;
- a run answered from a response cache another run filled (cache hits).

How cache hits count, on every path: a hit is a call (`calls`, `gpo_llm_calls_total`) and a cache hit
(`cache_hits`, `gpo_llm_cache_hits_total`), never a request, and it has no tokens (`requests` and tokens are what the
endpoint saw). The budget spends what the endpoint saw: `budget.max_calls` against requests, `max_tokens` against
the endpoint's tokens. A score the evaluator already holds (the same prompt on the same example) is no call at all.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig
from gpo_ray.controller import warm_start
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.integration.test_e2e_paper_preset import paper_config
from tests.integration.test_metrics_ray import scrape_all_nodes, total
from tests.integration.usage_checks import assert_files_agree_with_the_endpoint, driver_events

pytestmark = pytest.mark.usefixtures("ray_cluster")


def unique_run_dir(tmp_path: Path, what: str) -> Path:
    """The metrics' run tag is the run directory's name: unique, the cluster is shared by the whole session."""
    return tmp_path / f"{what}-{uuid.uuid4().hex[:8]}"


def one_task_config(tmp_path: Path, base_url: str, **optimizer) -> RunConfig:
    config = make_config(tmp_path, base_url, **{"epochs": 1, **optimizer})
    return config.model_copy(update={"tasks": ["sums/a"], "run_dir": unique_run_dir(tmp_path, "run")})


def read(run_dir: Path) -> tuple[dict, dict]:
    return (json.loads((run_dir / "usage.json").read_text()), json.loads((run_dir / "results.json").read_text()))


def assert_metrics_agree(run_dir: Path, usage: dict) -> None:
    """The exported gpo_llm_* series of the run equal usage.json (a series never incremented is not exported: 0)."""
    run = run_dir.name
    want: dict[tuple[str, str], float] = {}
    for role, u in usage.items():
        for series, value in (("calls", u["calls"]), ("requests", u["requests"]), ("cache_hits", u["cache_hits"])):
            want[(f"ray_gpo_llm_{series}_total", role)] = value
        want[("ray_gpo_llm_tokens_total/prompt", role)] = u["prompt_tokens"]
        want[("ray_gpo_llm_tokens_total/completion", role)] = u["completion_tokens"]
        want[("ray_gpo_llm_call_latency_seconds_count", role)] = u["calls"] - u["cache_hits"]

    def got(samples, key: tuple[str, str]) -> float:
        name, _, kind = key[0].partition("/")
        labels = {"run": run, "role": key[1], **({"kind": kind} if kind else {})}
        return total(samples, name, **labels) or 0.0

    deadline = time.monotonic() + 90  # Ray exports every few seconds: poll (the deadline only bounds the wait)
    while True:
        samples = scrape_all_nodes()
        wrong = {k: (got(samples, k), v) for k, v in want.items() if got(samples, k) != v}
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not wrong, f"(exported, usage.json) per series: {wrong}"


def test_re_asked_candidates_are_counted_once_on_every_path(tmp_path):
    """A one-word edit budget: every candidate of the fake is over it, so each step re-asks twice (strict)."""
    base = one_task_config(tmp_path / "cfg", "http://placeholder/v1")
    with ThreadedFake(fake_config(base)) as fake:
        config = one_task_config(tmp_path / "x", fake.base_url, edit_enforcement="strict", max_rerequests=2,
                                 schedule={"initial": 1, "final": 1})
        optimize(config)
        endpoint = fake.stats()
    usage = assert_files_agree_with_the_endpoint(config.run_dir, endpoint)
    _, results = read(config.run_dir)
    steps = results["tasks"]["sums/a"]["steps"]
    assert steps and all(s["counts"].get("rejected:over_budget", 0) > 0 for s in steps), "candidates were re-asked"
    asked_once = len(steps) * config.optimizer.candidates
    assert endpoint["roles"]["optimizer"] > asked_once, "the re-asks reached the endpoint"
    assert usage["optimizer"]["calls"] == endpoint["roles"]["optimizer"]
    assert_metrics_agree(config.run_dir, usage)


# The fake appends one of these to the current prompt: after step 1 moves to "<initial> Work carefully.", step 2
# proposes "<initial> Work carefully. Be concise." again, a candidate step 1 scored; three phrases for 8 samples a
# step repeat within each step too.
REPEATING_PHRASES = ["Work carefully.", "Work carefully. Be concise.", "Be concise."]


def test_repeated_candidates_are_counted_once_on_every_path(tmp_path):
    """The paper preset keeps a repeated candidate's earlier score (no new scoring calls for it), and the fake repeats
    candidates within a step (duplicates: still optimizer calls)."""
    base = paper_config(tmp_path, "http://placeholder/v1")
    with ThreadedFake(fake_config(base).model_copy(update={"optimizer_phrases": REPEATING_PHRASES})) as fake:
        config = paper_config(tmp_path, fake.base_url)
        config = config.model_copy(update={"run_dir": unique_run_dir(tmp_path, "paper")})
        optimize(config)
        endpoint = fake.stats()
    usage = assert_files_agree_with_the_endpoint(config.run_dir, endpoint)
    _, results = read(config.run_dir)
    steps = results["tasks"]["sums/a"]["steps"]
    assert sum(s["counts"].get("duplicate", 0) for s in steps) > 0, "the fake repeated candidates within a step"
    assert sum(s["counts"].get("reused_score", 0) for s in steps) > 0, "a repeated candidate kept its score"
    assert usage["optimizer"]["calls"] == len(steps) * config.optimizer.candidates == endpoint["roles"]["optimizer"]
    assert_metrics_agree(config.run_dir, usage)


def test_a_warm_starts_driver_side_calls_are_counted_once_on_every_path(tmp_path, monkeypatch):
    """Ray's part of the start is held (the driver's metrics are attached to Ray first) until the driver itself has
    completed a step: generated and scored in the driver, its gpo_llm_* counts held, then the actors take over."""
    base = one_task_config(tmp_path / "cfg", "http://placeholder/v1")
    step_one_in_driver = threading.Event()
    attach = warm_start.DeferredMetrics.attach

    def attach_after_a_driver_step(self) -> None:
        if threading.current_thread() is threading.main_thread():
            # The driver's own metrics, made once Ray is up (launch/session.py): attached where the driver runs, or
            # the driver would be the one held, waiting for its own step.
            attach(self)
            return
        checkpoint = config.run_dir / "checkpoints" / task_file_name("sums/a")
        deadline = time.monotonic() + 120  # bounds the wait only: the assertion is on the event
        while not step_one_in_driver.is_set() and time.monotonic() < deadline:
            if checkpoint.exists() and len(checkpoint.read_text().splitlines()) >= 2:  # steps 0 and 1
                step_one_in_driver.set()
            time.sleep(0.05)
        attach(self)

    monkeypatch.setattr(warm_start.DeferredMetrics, "attach", attach_after_a_driver_step)
    with ThreadedFake(fake_config(base)) as fake:
        config = one_task_config(tmp_path / "x", fake.base_url)
        optimize(config)
        endpoint = fake.stats()
    assert step_one_in_driver.is_set(), "step 1 ran in the driver before any actor existed"
    (handover,) = driver_events(config.run_dir, "warm_start_done")
    assert handover["in_process_generations"] >= 1 and handover["in_process_items"] > 0
    usage = assert_files_agree_with_the_endpoint(config.run_dir, endpoint)
    _, results = read(config.run_dir)
    steps = results["tasks"]["sums/a"]["steps"]
    assert usage["optimizer"]["calls"] == len(steps) * config.optimizer.candidates
    assert_metrics_agree(config.run_dir, usage)


def test_cache_hits_count_the_same_on_every_path(tmp_path):
    """A second run of the same config over a copy of the first one's response cache: the same calls, every one a
    cache hit; no request, no token."""
    base = one_task_config(tmp_path / "cfg", "http://placeholder/v1")
    with ThreadedFake(fake_config(base)) as fake:
        first = one_task_config(tmp_path / "x", fake.base_url)
        optimize(first)
        first_usage = assert_files_agree_with_the_endpoint(first.run_dir, fake.stats())
        fake.reset()
        second = first.model_copy(update={"run_dir": unique_run_dir(tmp_path, "cached")})
        shutil.copytree(first.run_dir / "cache", second.run_dir / "cache")
        again = optimize(second)
        endpoint = fake.stats()
    assert endpoint["requests"] == 0, "every call was answered by the cache"
    usage = assert_files_agree_with_the_endpoint(second.run_dir, endpoint)
    for role in ("optimizer", "task_model"):
        assert usage[role]["calls"] == usage[role]["cache_hits"] == first_usage[role]["calls"] > 0, role
        assert usage[role]["prompt_tokens"] == usage[role]["completion_tokens"] == 0, role
    _, results = read(first.run_dir)
    assert {t: r.to_dict() for t, r in again.tasks.items()} == results["tasks"]
    assert_metrics_agree(second.run_dir, usage)
