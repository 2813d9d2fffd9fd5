"""A sweep against its variants run one after another: wall time, and endpoint requests saved by the shared cache.

    .venv/bin/python -m benchmarks.sweep                      # 4 variants x 3 tasks x 2 seeds: about 2 minutes on 2 cores
    .venv/bin/python -m benchmarks.sweep --tasks 6 --seeds 0,1,2

The grid: optimizer.update (generate | edit) x optimizer.budget_in_prompt (true | false) on --tasks BBH tasks (the
shared data, else synthetic), for --seeds, against one fake endpoint (gpo_ray.testing.ProcessFake, --latency per
request, --slots at once). Both ways run in this process on one local Ray, one after the other, with the response
cache on: `sweep()` (one set of actors, one shared cache) and `optimize()` of every (variant, seed) in turn, each
with its own run directory and cache, as a user without sweeps would run them. Reported: each way's wall time
(actor start-up included, once for the sweep, per run for the other), the endpoint's requests, the ratios, and
whether every sub-run's results equal its run alone (`identical_results`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.workload import Workload, endpoint_config, run_config
from gpo_ray.testing import ProcessFake

AXES = {"optimizer.update": ["generate", "edit"], "optimizer.budget_in_prompt": [True, False]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=cli.csv_ints, default=[0, 1])


def measure(workload: Workload, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The sweep, then its (variant, seed) runs one after another, against one endpoint. Needs Ray started."""
    from gpo_ray.api import optimize
    from gpo_ray.grid import grid_from_dict
    from gpo_ray.sweep import sweep

    with ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots, timeline=False)) as endpoint:
        base = run_config(workload, endpoint.base_url, root, args, evaluators=args.evaluators)
        base = base.model_copy(update={"cache": True}).public_dict()
        base.pop("run_dir")
        grid = grid_from_dict({"base": base, "axes": AXES, "seeds": list(args.seeds)}, folder=root)

        endpoint.reset()
        t0 = time.perf_counter()
        swept = sweep(grid, sweep_dir=root / "sweep")
        sweep_wall = time.perf_counter() - t0
        sweep_requests = endpoint.stats()["requests"]
        print(f"  sweep: {len(swept.runs)} runs, {sweep_wall:.1f} s, {sweep_requests} endpoint requests", flush=True)

        endpoint.reset()
        t0 = time.perf_counter()
        identical = True
        for run in grid.sub_runs(root / "one-by-one"):
            alone = optimize(run.config)
            identical &= alone.tasks == swept.runs[run.name].tasks
        serial_wall = time.perf_counter() - t0
        serial_requests = endpoint.stats()["requests"]
        print(f"  one by one: {serial_wall:.1f} s, {serial_requests} endpoint requests", flush=True)

    return {
        "variants": len(grid.variants), "tasks": len(workload.tasks), "seeds": list(args.seeds),
        "runs": len(swept.runs),
        "sweep": {"wall_s": sweep_wall, "endpoint_requests": sweep_requests},
        "one_by_one": {"wall_s": serial_wall, "endpoint_requests": serial_requests},
        "speedup": serial_wall / sweep_wall,
        "requests_saved": serial_requests - sweep_requests,
        "requests_saved_fraction": 1 - sweep_requests / serial_requests,
        "identical_results": identical,
    }


def print_section(r: dict[str, Any]) -> None:
    print(f"\nsweep of {r['variants']} variants x {r['tasks']} tasks x {len(r['seeds'])} seeds ({r['runs']} runs)")
    print(f"{'':14}{'wall s':>8}{'endpoint requests':>19}")
    for label, key in (("sweep", "sweep"), ("one by one", "one_by_one")):
        print(f"{label:14}{r[key]['wall_s']:8.1f}{r[key]['endpoint_requests']:19,d}")
    print(f"speed-up {r['speedup']:.2f}x; {r['requests_saved']:,} requests saved by the shared cache "
          f"({100 * r['requests_saved_fraction']:.0f}%); identical results: {r['identical_results']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("sweep", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    p.set_defaults(tasks=3, train_limit=16)  # 2 steps per task and epoch: 24 small runs
    add_arguments(p)
    cli.add_out(p, "sweep")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def fill(report: dict[str, Any], workload: Workload, root: Path) -> None:
        report["sweep"] = measure(workload, root, args)

    return cli.run(argv, args, fill, lambda report: print_section(report["sweep"]))


if __name__ == "__main__":
    raise SystemExit(main())
