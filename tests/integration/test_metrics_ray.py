"""Live metrics seen the way a user sees them: a real run on the shared Ray cluster against the fake endpoint,
then the node's Prometheus endpoint scraped and the gpo_* series compared with the run's own usage.json and
results.json (Ray exports them with a `ray_` prefix, after its export interval - so poll, with a deadline)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid

import pytest
import ray

from gpo_ray.api import optimize
from gpo_ray.testing import ThreadedFake

from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.integration.usage_checks import assert_files_agree_with_the_endpoint

pytestmark = pytest.mark.usefixtures("ray_cluster")

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_all_nodes() -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample on every alive node's metrics endpoint."""
    samples = []
    for node in ray.nodes():
        if not node.get("Alive") or not node.get("MetricsExportPort"):
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode("utf-8")
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and not line.startswith("#"):
                samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def total(samples, name: str, **labels: str) -> float | None:
    """Sum of a series over processes (Ray labels each worker), None when no process exported it."""
    hits = [v for n, lab, v in samples if n == name and all(lab.get(k) == v2 for k, v2 in labels.items())]
    return sum(hits) if hits else None


def expected_series(run: str, usage: dict, results: dict) -> dict[tuple, float]:
    want: dict[tuple, float] = {}
    for role in ("optimizer", "task_model"):
        u = usage[role]
        want[("ray_gpo_llm_calls_total", role)] = u["calls"]
        want[("ray_gpo_llm_requests_total", role)] = u["requests"]
        want[("ray_gpo_llm_tokens_total", role, "prompt")] = u["prompt_tokens"]
        want[("ray_gpo_llm_tokens_total", role, "completion")] = u["completion_tokens"]
        # a call not served from cache is timed once
        want[("ray_gpo_llm_call_latency_seconds_count", role)] = u["calls"] - u["cache_hits"]
        want[("ray_gpo_llm_request_latency_seconds_count", role)] = u["requests"]
        if u["cache_hits"]:  # a counter never incremented is never exported
            want[("ray_gpo_llm_cache_hits_total", role)] = u["cache_hits"]
        if u["retries"]:
            want[("ray_gpo_llm_retries_total", role)] = u["retries"]
        for kind, n in u["errors"].items():
            want[("ray_gpo_llm_errors_total", role, kind)] = n
    for task, entry in results["tasks"].items():
        want[("ray_gpo_steps_completed_total", "task", task)] = len(entry["steps"])
        want[("ray_gpo_step_latency_seconds_count", "task", task)] = len(entry["steps"])
        want[("ray_gpo_best_eval_score", "task", task)] = entry["best_eval_score"]
    return want


def observed(samples, run: str, key: tuple) -> float | None:
    name = key[0]
    if key[1] == "task":
        return total(samples, name, run=run, task=key[2])
    if len(key) == 3:
        return total(samples, name, run=run, role=key[1], kind=key[2])
    return total(samples, name, run=run, role=key[1])


def test_a_run_exports_its_gpo_metrics_matching_its_usage_and_results(tmp_path):
    base = make_config(tmp_path / "cfg", "http://placeholder/v1")
    with ThreadedFake(fake_config(base)) as fake:
        config = make_config(tmp_path / "x", fake.base_url)
        run = f"metrics-{uuid.uuid4().hex[:8]}"  # the run tag: unique, other tests' runs share this cluster
        config = config.model_copy(update={"run_dir": tmp_path / run})
        optimize(config)
        endpoint = fake.stats()  # this test's own endpoint: only this run's requests

    # The paths agree: usage.json with the endpoint (issue 23: it once counted an actor's calls twice), and below the
    # exported metrics with usage.json.
    usage = assert_files_agree_with_the_endpoint(config.run_dir, endpoint)
    results = json.loads((config.run_dir / "results.json").read_text())
    assert usage["optimizer"]["requests"] > 0 and usage["task_model"]["requests"] > 0
    want = expected_series(run, usage, results)

    deadline = time.monotonic() + 90  # a few export intervals
    while True:
        samples = scrape_all_nodes()
        got = {key: observed(samples, run, key) for key in want}
        wrong = {k: (got[k], v) for k, v in want.items()
                 if got[k] is None or abs(got[k] - v) > 1e-9 * max(1.0, abs(v))}
        # The driver's gauges are exported on their own schedule: wait for the pools' final 0 too.
        wrong.update({("ray_gpo_queue_depth", pool): (depth, 0) for pool in ("evaluator", "refiner")
                      if (depth := total(samples, "ray_gpo_queue_depth", run=run, pool=pool)) != 0})
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not wrong, f"(observed, expected) per series: {wrong}"

    # Gauges: the last step's edit budget per task, and both pools drained at the end.
    for task, entry in results["tasks"].items():
        assert total(samples, "ray_gpo_edit_budget", run=run, task=task) == entry["steps"][-1]["edit_budget"]
    for pool in ("evaluator", "refiner"):
        assert total(samples, "ray_gpo_queue_depth", run=run, pool=pool) == 0, pool
