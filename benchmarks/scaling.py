"""How utilization, wall time and CPU per call change as endpoint slots, evaluator actors and tasks grow.

    .venv/bin/python -m benchmarks.scaling                    # 11 small runs: about 2 minutes on 2 cores
    .venv/bin/python -m benchmarks.scaling --scaling-slots 1,64 --scaling-evaluators 2 --scaling-tasks 3

Each row is a small gpo-ray run (--scaling-train-limit training examples per task, so 2 steps) that varies one axis
at a time, the others at their defaults: slots on 3 tasks, evaluators on 9 tasks at --slots, tasks at --slots. Each
run has a fresh fake endpoint (gpo_ray.testing.ProcessFake) in its own process.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.runs import distributed_run, strip
from benchmarks.harness.workload import Workload, endpoint_config
from gpo_ray.testing import ProcessFake


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scaling-slots", type=cli.csv_ints, default=[1, 4, 16, 64])
    p.add_argument("--scaling-evaluators", type=cli.csv_ints, default=[1, 2, 4, 8])
    p.add_argument("--scaling-tasks", type=cli.csv_ints, default=[3, 9, 27])
    p.add_argument("--scaling-train-limit", type=int, default=16, help="train examples per task in scaling runs")


def measure(workload: Workload, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Small runs (train limited) along one axis at a time, the others at their defaults. Needs Ray started."""
    small = argparse.Namespace(**{**vars(args), "train_limit": args.scaling_train_limit})
    base_tasks = min(3, len(workload.tasks))
    plan: list[tuple[str, int, int, int]] = []
    plan += [("slots", base_tasks, s, args.evaluators) for s in args.scaling_slots]
    plan += [("evaluators", min(9, len(workload.tasks)), args.slots, e) for e in args.scaling_evaluators]
    plan += [("tasks", n, args.slots, args.evaluators) for n in args.scaling_tasks if n <= len(workload.tasks)]
    out = []
    for axis, n_tasks, slots, evaluators in plan:
        with ProcessFake(endpoint_config(workload, latency=args.latency, slots=slots)) as endpoint:
            r = strip(distributed_run(workload.subset(n_tasks), endpoint, root, small, evaluators=evaluators))
        r["axis"] = axis
        out.append(r)
        print(f"  scaling {axis}: tasks {n_tasks} slots {slots} evaluators {evaluators}: {r['wall_s']:.1f} s, "
              f"util {r['utilization']['whole_run']:.2f}", flush=True)
    return out


def print_section(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'scaling':10}{'tasks':>6}{'slots':>6}{'evals':>6}{'wall s':>8}{'util':>7}{'util*':>7}{'ms/call':>9}")
    for r in rows:
        ru = r["utilization"]
        print(f"{r['axis']:10}{r['tasks']:6d}{r['slots']:6d}{r['evaluators']:6d}{r['wall_s']:8.1f}"
              f"{ru['whole_run']:7.2f}{ru['active_window']:7.2f}{r['cpu_ms_per_call']:9.2f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("scaling", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    add_arguments(p)
    cli.add_out(p, "scaling")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def fill(report: dict[str, Any], workload: Workload, root: Path) -> None:
        report["scaling"] = measure(workload, root, args)

    return cli.run(argv, args, fill, lambda report: print_section(report["scaling"]))


if __name__ == "__main__":
    raise SystemExit(main())
