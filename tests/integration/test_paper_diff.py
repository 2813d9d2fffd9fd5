"""The differential check end to end (benchmarks/paper_diff.py) against the authors' code.

Needs a local copy of RUCAIBox/GPO, fetched by you: GPO_OFFICIAL_CODE=/path/to/GPO. Without it the test skips.
It runs the aligned check on bbh/navigate for one epoch (a few minutes on 2 cores) and checks that every
optimizer request, budget and choice was compared and that each difference is named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = os.environ.get("GPO_OFFICIAL_CODE")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,  # gpo-ray's side is a run of its own, with its own Ray
    pytest.mark.skipif(not OFFICIAL, reason="GPO_OFFICIAL_CODE is not set: give it the path of a local copy of "
                       "RUCAIBox/GPO to run the differential check against the authors' code"),
]


def test_aligned_check_on_navigate_compares_every_request_and_names_each_difference(tmp_path, shared_data_dir):
    out = tmp_path / "diff"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.paper_diff", "--official", OFFICIAL, "--task", "bbh/navigate",
         "--epochs", "1", "--align", "--data-dir", str(shared_data_dir), "--out", str(out)],
        check=False, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=1800,
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "paper_diff.json").read_text())
    counts = report["counts"]
    assert counts["optimizer requests"]["compared"] == 48  # 6 steps of 8
    assert counts["edit budgets"]["compared"] == 6 and counts["choices"]["compared"] == 6
    assert counts["task requests (first turn)"]["compared"] > 0 and counts["task requests (second turn)"]["compared"] > 0
    assert (proc.returncode == 1) == bool(report["differences"])
    for d in report["differences"]:
        assert d["what"] and d["where"] and d["detail"]
    assert (out / "paper_diff.md").read_text().startswith("# Paper preset vs the official loop")
