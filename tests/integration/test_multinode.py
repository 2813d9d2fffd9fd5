"""A real multi-node Ray cluster on one machine: work spreads over the worker nodes by custom resources,
and a worker node removed in the middle of a run leaves the result unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.multinode]
ROOT = Path(__file__).resolve().parents[2]


def run_cluster(tmp_path: Path, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.multinode_run", str(tmp_path), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def test_actors_spread_over_worker_nodes_and_the_memory_stays_on_the_head(tmp_path):
    report = run_cluster(tmp_path)
    workers = set(report["workers"])
    assert set(report["placed"]["evaluators"]) == workers, "evaluators on both worker nodes, none on the head"
    assert set(report["placed"]["refiners"]) <= workers
    assert report["placed"]["memory"] == [report["head"]]
    assert report["same_result"]


def test_a_worker_node_removed_mid_run_changes_nothing(tmp_path):
    report = run_cluster(tmp_path, "--remove-node")
    assert report["removed"], "the node was removed during the run"
    assert report["same_result"]
    for task, steps in report["steps"].items():
        assert steps == list(range(report["expected_steps"][task] + 1)), f"{task}: every step exactly once"
