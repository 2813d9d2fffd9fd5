"""All the throughput benchmarks in one run: speed-up and utilization, scaling, adaptive evaluation.

    .venv/bin/python -m benchmarks.throughput                 # defaults: about 3.5 minutes on 2 cores
    .venv/bin/python -m benchmarks.throughput --tasks 9 --no-scaling --out /tmp/t.json

Runs, one after another in this process so machine noise hits all sides alike, and writes one JSON report:
- `benchmarks.speedup` on --tasks tasks: gpo-ray against the endpoint's limit, the sequential reference and the
  paper's loop (utilization, speed-ups, identical results, CPU per call, peak RSS);
- `benchmarks.scaling` (unless --no-scaling): small runs as endpoint slots, evaluators and tasks grow;
- `benchmarks.adaptive` (unless --no-adaptive) on all 27 tasks: successive halving against full evaluation.
Each of them also runs alone (`python -m benchmarks.<name> --help`); compare ratios, not seconds across runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import adaptive, scaling, speedup
from benchmarks.harness import cli
from benchmarks.harness.workload import Workload, load_workload

ADAPTIVE_TASKS = 27  # adaptive evaluation runs on all the shared BBH tasks, whatever --tasks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("throughput", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    speedup.add_arguments(p)
    p.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True, help="run benchmarks.scaling")
    scaling.add_arguments(p)
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True, help="run benchmarks.adaptive")
    adaptive.add_arguments(p)
    cli.add_out(p, "throughput")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def fill(report: dict[str, Any], workload: Workload, root: Path) -> None:
        report.update(speedup.measure(workload, root, args))
        if args.scaling:
            report["scaling"] = scaling.measure(workload, root, args)
        if args.adaptive:
            shared = (workload.subset(ADAPTIVE_TASKS) if len(workload.tasks) >= ADAPTIVE_TASKS
                      else load_workload(ADAPTIVE_TASKS, data_dir=args.data_dir, scratch=root / "adaptive"))
            report["adaptive"] = adaptive.measure(shared, args)

    def show(report: dict[str, Any]) -> None:
        speedup.print_section(report)
        if report.get("scaling"):
            scaling.print_section(report["scaling"])
        if report.get("adaptive"):
            adaptive.print_section(report["adaptive"])

    return cli.run(argv, args, fill, show)


if __name__ == "__main__":
    raise SystemExit(main())
