"""Does the main job show GPO at work? The quickstart config, run as the README runs it, for three fixed seeds.

    .venv/bin/python -m benchmarks.quickstart_gain                  # seeds 0 1 2, about 3 minutes each on 2 cores
    .venv/bin/python -m benchmarks.quickstart_gain --seeds 0 --config examples/quickstart.yaml --keep runs/qs

Each seed is one `gpo-ray optimize CONFIG --seed S --run-dir DIR --quiet` subprocess (the command the README
gives, plus the seed), timed from start to exit. The seeds are fixed before measuring (0, 1, 2): no seed is
dropped, and the test split is only read for the final scores of the initial and the best prompt, which the
run chooses by its eval score. Printed and written (--out, markdown; JSON next to it): per seed the initial and
best test score, the gain, the best prompt and the wall time; and the mean gain.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "examples" / "quickstart.yaml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "quickstart_gain.md"


def gpo_ray_command() -> list[str]:
    """The installed `gpo-ray` script next to this interpreter (as the README runs it), else `python -m gpo_ray`."""
    script = Path(sys.executable).parent / "gpo-ray"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gpo_ray"]


def run_seed(config: Path, seed: int, run_dir: Path) -> dict[str, Any]:
    """One optimize run; returns its per-task results, wall time and exit code."""
    cmd = [*gpo_ray_command(), "optimize", str(config), "--seed", str(seed), "--run-dir", str(run_dir), "--quiet"]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.monotonic() - started
    row: dict[str, Any] = {"seed": seed, "exit_code": proc.returncode, "wall_s": round(wall, 1), "tasks": {},
                           # the machine is shared: the 1-minute load average says how much else ran
                           "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    results_path = run_dir / "results.json"
    if proc.returncode != 0 or not results_path.is_file():
        row["error"] = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return row
    results = json.loads(results_path.read_text(encoding="utf-8"))
    for name, task in results["tasks"].items():
        row["tasks"][name] = {
            key: task.get(key)
            for key in ("initial_prompt", "initial_eval_score", "initial_test_score", "best_prompt",
                        "best_eval_score", "best_test_score", "best_step")
        }
    usage = results.get("usage", {})
    row["requests"] = {role: usage.get(role, {}).get("requests") for role in ("optimizer", "task_model")}
    return row


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[dict[str, Any]], *, command: str, config: Path) -> str:
    """The table for benchmarks/README.md: one line per seed and task, then the mean gain."""
    lines = [
        f"`{command}` ({datetime.now(UTC):%Y-%m-%d}, config `{config.relative_to(ROOT) if config.is_relative_to(ROOT) else config}`)",
        "",
        "| seed | task | initial test | best test | gain | best eval (step) | wall s | best prompt |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    gains: list[float] = []
    for row in rows:
        if not row["tasks"]:
            lines.append(f"| {row['seed']} | - | - | - | - | - | {row['wall_s']} | exit {row['exit_code']}: "
                         f"{_cell(row.get('error', ''))} |")
            continue
        for name, t in row["tasks"].items():
            gain = None
            if t["initial_test_score"] is not None and t["best_test_score"] is not None:
                gain = t["best_test_score"] - t["initial_test_score"]
                gains.append(gain)
            lines.append(
                f"| {row['seed']} | {name} | {_score(t['initial_test_score'])} | {_score(t['best_test_score'])} | "
                f"{'-' if gain is None else f'{gain:+.3f}'} | {_score(t['best_eval_score'])} ({t['best_step']}) | "
                f"{row['wall_s']} | {_cell(t['best_prompt'])} |"
            )
    initial = {t["initial_prompt"] for row in rows for t in row["tasks"].values()}
    mean_gain = sum(gains) / len(gains) if gains else None
    mean_text = "-" if mean_gain is None else f"{mean_gain:+.3f}"
    lines += ["", (f"Initial prompt: {' / '.join(repr(p) for p in sorted(initial))}. "
                   f"Mean test gain over {len(gains)} run(s): **{mean_text}**.")]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quickstart_gain", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown table; the JSON goes next to it")
    p.add_argument("--keep", type=Path, help="keep the run directories under this folder (default: a temporary one)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = args.config.resolve()
    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gpo-quickstart-gain-"))
    rows = []
    try:
        for seed in args.seeds:
            row = run_seed(config, seed, root / f"seed-{seed}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    command = "python -m benchmarks.quickstart_gain " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(rows, command=command.strip(), config=config)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"config": str(config), "rows": rows}, indent=2) + "\n",
                                             encoding="utf-8")
    return 0 if all(row["exit_code"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
