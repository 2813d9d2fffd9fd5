"""Stalled replies with the default settings (issue 26): a 1-epoch run undisturbed, then with a share of its
requests stalled, as a user runs it; the ratio of their wall times.

    .venv/bin/python -m benchmarks.stalls_default                      # bbh/navigate, 15% stalls, 2 pairs
    .venv/bin/python -m benchmarks.stalls_default --repeats 3 --stall-rate 0.15 --out /tmp/stalls.json

Each run is one `gpo-ray optimize CONFIG --quiet` subprocess (its own local Ray, as the README runs it) against a
fresh fake endpoint (`ProcessFake`, one for both roles) that answers in `--latency` seconds; the disturbed run's
endpoint stalls `--stall-rate` of the distinct requests (headers and the first bytes of the body, then nothing:
`fault_rates: {stall: R}`, decided per request and attempt, so a retry may stall again). The config sets only the
endpoints, the task and the epochs: every other setting is the default. Reported per pair: both wall times, their
ratio, the stalls served, what usage.json counted per role (stalled, retries, hedges) and whether both runs chose
the same steps (prompts, scores, candidates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import cli
from benchmarks.harness.workload import SHARED_DATA
from benchmarks.quickstart_gain import ROOT, gpo_ray_command
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ProcessFake, answer_key_from_examples

SKILLS = {"step by step": 0.3, "carefully": 0.2, "each option": 0.15}
PHRASES = ["Think step by step.", "Read each option carefully.", "Be concise.", "Check each option.",
           "Work carefully.", "Answer directly."]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("stalls_default", __doc__)
    p.add_argument("--task", default="bbh/navigate")
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.15), help="endpoint seconds per request, "
                   "in [a, b] by request hash")
    p.add_argument("--stall-rate", type=float, default=0.15)
    p.add_argument("--repeats", type=int, default=2, help="pairs of runs (undisturbed, stalled)")
    p.add_argument("--set", action="append", default=[], metavar="ROLE.KEY=VALUE",
                   help="a role setting for both roles of both runs, e.g. read_timeout_s=10 (default: none)")
    cli.add_out(p, "stalls_default")
    return p.parse_args(argv)


def endpoint(args: argparse.Namespace, stall_rate: float) -> FakeLLMConfig:
    (task,) = resolve_tasks([args.task], data_dir=args.data_dir)
    return FakeLLMConfig(latency_s=tuple(args.latency), concurrency=256, skill_phrases=SKILLS,
                         optimizer_phrases=PHRASES, base_accuracy=0.3,
                         answer_key=answer_key_from_examples([*task.train, *task.eval, *task.test]),
                         fault_rates={"stall": stall_rate} if stall_rate else {})


def role_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: yaml.safe_load(value) for key, _, value in (s.partition("=") for s in args.set)}


def run_once(args: argparse.Namespace, stall_rate: float, work: Path) -> dict[str, Any]:
    run_dir = work / "run"
    work.mkdir(parents=True)
    with ProcessFake(endpoint(args, stall_rate)) as fake:
        role = {"base_url": fake.base_url, "model": "fake-llm", **role_settings(args)}
        config = {"tasks": [args.task], "data_dir": str(args.data_dir), "optimizer": {"epochs": args.epochs},
                  "task_model": role, "optimizer_model": role, "run_dir": str(run_dir)}
        path = work / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        started = time.monotonic()
        proc = subprocess.run([*gpo_ray_command(), "optimize", str(path), "--quiet"], capture_output=True, text=True,
                              cwd=ROOT, check=False)
        wall = time.monotonic() - started
        served = fake.stats()
    if proc.returncode != 0:
        raise SystemExit(f"gpo-ray optimize exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    usage = json.loads((run_dir / "usage.json").read_text(encoding="utf-8"))
    steps = {name: [(s["step"], s["prompt"], s["eval_score"], s["candidates"]) for s in task["steps"]]
             for name, task in results["tasks"].items()}
    return {"wall_s": round(wall, 2), "stalls_served": served["faults"].get("stall", 0),
            "requests_served": served["requests"],
            "usage": {r: {"requests": u["requests"], "stalled": u["errors"].get("stalled", 0), "retries": u["retries"],
                          "hedges": u["hedges"]} for r, u in usage.items() if isinstance(u, dict) and "requests" in u},
            "steps": steps}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    pairs = []
    for i in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="gpo-stalls-default-"))
        try:
            calm = run_once(args, 0.0, work / "calm")
            stalled = run_once(args, args.stall_rate, work / "stalled")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        pair = {"undisturbed_s": calm["wall_s"], "stalled_s": stalled["wall_s"],
                "ratio": round(stalled["wall_s"] / calm["wall_s"], 2), "stalls_served": stalled["stalls_served"],
                "requests_served": [calm["requests_served"], stalled["requests_served"]],
                "usage": stalled["usage"], "same_steps": calm["steps"] == stalled["steps"]}
        print(json.dumps(pair), flush=True)
        pairs.append(pair)
    return {"task": args.task, "epochs": args.epochs, "stall_rate": args.stall_rate, "latency_s": list(args.latency),
            "settings": role_settings(args), "pairs": pairs}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report = cli.new_report(argv)
    report["stalls_default"] = measure(args)
    cli.finish(report, args.out, started)
    return 0 if all(p["same_steps"] for p in report["stalls_default"]["pairs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
