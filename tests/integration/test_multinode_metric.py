"""A Python metric file on a real two-node Ray cluster (issue 24): `gpo-ray optimize --address` with a metric
`file.py:score` that lives in a fresh folder on no Ray process's path and is installed nowhere. The run ships the file
to the worker node's evaluators (runtime_env py_modules), and the metric runs there, from the shipped copy, scoring
what a user computes by hand. (A metric that cannot be imported, on the driver or on an evaluator, stops the run with
one line: tests/integration/test_e2e_metrics.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.multinode]
ROOT = Path(__file__).resolve().parents[2]


def test_a_metric_file_from_a_folder_on_no_path_runs_on_the_worker_node(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tests.multinode_metric_run", str(tmp_path)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert not report["driver_can_import"], "the metric's module must be importable from nowhere but its file"

    # The run completed, and its scores are the metric's, as a user computes them by hand on the fake's replies.
    assert report["exit_code"] == 0 and report["status"] == "completed"
    scores = report["scores"]
    for name, score in report["by_hand"].items():
        assert scores[name] == pytest.approx(score), name
    # 0.25 for a wrong reply: no built-in metric gives these; the fake is right about half the time.
    assert 0.25 < scores["initial_eval_score"] < 1.0
    assert scores["best_test_score"] is not None and 0.25 <= scores["best_test_score"] <= 1.0

    # Every call of the metric ran in an evaluator actor on the worker node, from the copy Ray shipped there.
    calls = report["calls"]
    assert len(calls) >= 8 * 2, "the eval split scored at least twice (the initial prompt and a candidate)"
    assert {c["node"] for c in calls} == {report["worker"]} != {report["head"]}
    assert all(c["actor"] for c in calls)
    files = {c["file"] for c in calls}
    assert all(f.endswith("/node_scored_metric.py") and f != report["metric_file"] and "runtime_resources" in f
               for f in files), files
    assert not any(c["user_dir_on_path"] for c in calls)
    assert [c["score"] for c in calls] == report["calls_by_hand"]
