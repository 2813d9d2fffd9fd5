"""The command-line options the benchmarks share, and `run`: a benchmark's main (Ray, the workload, the JSON report)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.workload import SHARED_DATA, Workload, load_workload

RESULTS = Path("benchmarks/results")


def csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# Each benchmark takes the ones it uses, by name (`add_options`); a runner of several takes their union.
OPTIONS: dict[str, dict[str, Any]] = {
    # the workload
    "--tasks": dict(type=int, default=27, help="BBH tasks to run (27 = all)"),
    "--data-dir": dict(type=Path, default=SHARED_DATA,
                       help="the shared GPO data (BIG-Bench-Hard inside); absent: synthetic BBH-shaped tasks"),
    # the endpoint (gpo_ray.testing.ProcessFake)
    "--latency": dict(type=float, default=0.1, help="endpoint seconds per request"),
    "--slots": dict(type=int, default=64, help="endpoint concurrent requests"),
    # the actor system
    "--evaluators": dict(type=int, default=None,
                         help="default: what `gpo-ray optimize` starts on a cluster of its own on this machine"),
    "--refiners": dict(type=int, default=None, help="default: as --evaluators"),
    "--evaluator-max-in-flight": dict(type=int, default=None,
                                      help="deprecated cluster.evaluator_max_in_flight; default: from --max-in-flight"),
    "--max-in-flight": dict(type=int, default=None, help="each role's cap of requests in flight per endpoint, whole "
                            "run (divided among its actors); default gpo-ray's"),
    "--adaptive-concurrency": dict(action=argparse.BooleanOptionalAction, default=True,
                                   help="each role's adaptive_concurrency.enabled (gpo-ray's default: on)"),
    "--warm-start": dict(action=argparse.BooleanOptionalAction, default=True,
                         help="cluster.warm_start: the first calls begin in the driver while Ray starts"),
    # the optimizer
    "--epochs": dict(type=int, default=1),
    "--candidates": dict(type=int, default=4),
    "--batch-size": dict(type=int, default=8),
    "--train-limit": dict(type=int, default=None),
    "--eval-limit": dict(type=int, default=16),
    # measuring
    "--py-spy": dict(type=Path, default=None, metavar="DIR",
                     help="profile the driver and every actor of each distributed run with py-spy into DIR "
                          "(CPU figures of a profiled run are inflated by the sampling)"),
}
RUN_OPTIONS = tuple(OPTIONS)  # what a run against the endpoint needs (workload.run_config)


def add_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the shared options `names`, in that order."""
    for name in names:
        parser.add_argument(name, **OPTIONS[name])


def add_out(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--out", type=Path, default=RESULTS / f"{name}.json", help="where the JSON report goes")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring's first paragraph is the description."""
    return argparse.ArgumentParser(prog=f"python -m benchmarks.{prog}", description=(doc or "").split("\n\n")[0])


def quiet_logging() -> None:
    from gpo_ray.logs import configure_logging

    configure_logging(mode="quiet", log_file=None, secrets=[])


def start_ray() -> None:
    """A local Ray for the benchmark (distributed runs embed in the memory actor, which loads its own MiniLM)."""
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})


def new_report(argv: Sequence[str] | None) -> dict[str, Any]:
    """A report's head: the arguments it was run with and the machine's cores."""
    return {"argv": sys.argv[1:] if argv is None else list(argv), "cpus": os.cpu_count()}


def finish(report: dict[str, Any], out: Path, started: float) -> None:
    """Time the benchmark from `started` (time.perf_counter()) and write its report to `out`."""
    report["benchmark_wall_s"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {out}  (benchmark took {report['benchmark_wall_s']:.0f} s)")


def default_actor_counts(args: argparse.Namespace, *, tasks: int) -> None:
    """--evaluators / --refiners left unset: the counts `gpo-ray optimize` gives a run of `tasks` tasks on a cluster
    it starts on this machine (runtime/local_cluster.py), so a benchmark measures what a user gets by default. (The
    benchmarks start Ray themselves, so the run alone would take the counts of a cluster it joins.)"""
    from gpo_ray.config import ClusterSettings
    from gpo_ray.runtime.local_cluster import sized_cluster

    sized = sized_cluster(ClusterSettings(), tasks=tasks, one_machine=True)
    if hasattr(args, "evaluators") and args.evaluators is None:
        args.evaluators = sized.num_evaluators
    if hasattr(args, "refiners") and args.refiners is None:
        args.refiners = sized.num_refiners


def run(argv: Sequence[str] | None, args: argparse.Namespace,
        measure: Callable[[dict[str, Any], Workload, Path], None], show: Callable[[dict[str, Any]], None], *,
        with_ray: bool = True) -> int:
    """A benchmark's main: quiet logs, Ray started (`with_ray`), the workload of --tasks/--data-dir loaded in a scratch
    folder, `measure(report, workload, scratch)` filling the report, Ray stopped; then `show(report)` and the JSON
    written to --out."""
    quiet_logging()
    started = time.perf_counter()
    if with_ray:
        start_ray()
    report = new_report(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            workload = load_workload(args.tasks, data_dir=args.data_dir, scratch=root)
            default_actor_counts(args, tasks=len(workload.tasks))
            report["actors"] = {"evaluators": getattr(args, "evaluators", None),
                                "refiners": getattr(args, "refiners", None)}
            report["workload"] = {"tasks": len(workload.tasks), "source": workload.source}
            measure(report, workload, root)
    finally:
        if with_ray:
            import ray

            ray.shutdown()
    show(report)
    finish(report, args.out, started)
    return 0
