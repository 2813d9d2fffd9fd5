"""The rivals sweep (issue 28) against its methods run one after another: wall time, calls and endpoint requests.

    .venv/bin/python -m benchmarks.rivals                     # 5 methods x 3 tasks x 2 seeds
    .venv/bin/python -m benchmarks.rivals --tasks 3 --seeds 0

The grid: optimizer.method gpo | ape | apo | opro | pe2 (examples/rivals.yaml's variants: APO's settings shrunk to
the data) on --tasks BBH tasks (the shared data, else synthetic), for --seeds, against one fake endpoint
(gpo_ray.testing.ProcessFake, --latency per request, --slots at once). Both ways run in this process on one local
Ray, one after the other, with the response cache on: `sweep()` (one set of actors, one shared cache) and
`optimize()` of every (method, seed) in turn, each with its own run directory and cache, as a user running each
method's own code base would run them one by one. Reported: each way's wall time (actor start-up included, once for
the sweep, per run for the other), the LLM calls the runs asked for (the same both ways: `plan`'s), the endpoint's
requests, the ratios, and whether every sub-run's results equal its run alone (`identical_results`).
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

SMALL_APO = {"beam_size": 2, "minibatch_size": 4, "n_gradients": 2, "mc_samples_per_step": 1,
             "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 2, "samples_per_eval": 4}


def variants(candidates: int) -> dict[str, dict[str, Any]]:
    return {
        "gpo": {"optimizer.candidates": candidates},
        "ape": {"optimizer.method": "ape", "optimizer.candidates": candidates},
        "apo": {"optimizer.method": "apo", "optimizer.apo": SMALL_APO},
        "opro": {"optimizer.method": "opro", "optimizer.candidates": candidates},
        "pe2": {"optimizer.method": "pe2", "optimizer.candidates": candidates},
    }


def calls_of(results: Any) -> int:
    return sum(int(u.get("calls", 0)) for u in results.usage.values())


def measure(workload: Workload, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The sweep, then its (method, seed) runs one after another, against one endpoint. Needs Ray started."""
    from gpo_ray.api import optimize
    from gpo_ray.grid import grid_from_dict
    from gpo_ray.sweep import sweep

    with ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots, timeline=False)) as endpoint:
        base = run_config(workload, endpoint.base_url, root, args, evaluators=args.evaluators)
        base = base.model_copy(update={"cache": True}).public_dict()
        base.pop("run_dir")
        for key in ("candidates", "direction", "update"):  # each method's variant sets its own (pe2: its point)
            base["optimizer"].pop(key, None)
        grid = grid_from_dict({"base": base, "variants": variants(args.candidates), "seeds": list(args.seeds)},
                              folder=root)

        endpoint.reset()
        t0 = time.perf_counter()
        swept = sweep(grid, sweep_dir=root / "sweep")
        sweep_wall = time.perf_counter() - t0
        sweep_requests = endpoint.stats()["requests"]
        sweep_calls = sum(calls_of(r) for r in swept.runs.values())
        print(f"  sweep: {len(swept.runs)} runs, {sweep_wall:.1f} s, {sweep_requests} endpoint requests", flush=True)

        endpoint.reset()
        t0 = time.perf_counter()
        identical = True
        serial_calls = 0
        for run in grid.sub_runs(root / "one-by-one"):
            alone = optimize(run.config)
            serial_calls += calls_of(alone)
            identical &= alone.tasks == swept.runs[run.name].tasks
        serial_wall = time.perf_counter() - t0
        serial_requests = endpoint.stats()["requests"]
        print(f"  one by one: {serial_wall:.1f} s, {serial_requests} endpoint requests", flush=True)

    per_method = {v: sum(calls_of(r) for name, r in swept.runs.items() if swept.variants[name] == v)
                  for v in grid.variants}
    return {
        "methods": list(grid.variants), "tasks": len(workload.tasks), "seeds": list(args.seeds),
        "runs": len(swept.runs),
        "sweep": {"wall_s": sweep_wall, "calls": sweep_calls, "endpoint_requests": sweep_requests},
        "one_by_one": {"wall_s": serial_wall, "calls": serial_calls, "endpoint_requests": serial_requests},
        "calls_per_method": per_method,
        "speedup": serial_wall / sweep_wall,
        "requests_saved_fraction": 1 - sweep_requests / serial_requests,
        "identical_results": identical,
    }


def print_section(r: dict[str, Any]) -> None:
    print(f"\nrivals sweep: {len(r['methods'])} methods x {r['tasks']} tasks x {len(r['seeds'])} seeds "
          f"({r['runs']} runs)")
    print(f"{'':14}{'wall s':>8}{'calls':>9}{'endpoint requests':>19}")
    for label, key in (("sweep", "sweep"), ("one by one", "one_by_one")):
        print(f"{label:14}{r[key]['wall_s']:8.1f}{r[key]['calls']:9,d}{r[key]['endpoint_requests']:19,d}")
    print("calls per method (all seeds and tasks): " + ", ".join(f"{m} {c:,}" for m, c in r["calls_per_method"].items()))
    print(f"speed-up {r['speedup']:.2f}x; {100 * r['requests_saved_fraction']:.0f}% fewer endpoint requests; "
          f"identical results: {r['identical_results']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("rivals", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    p.set_defaults(tasks=3, train_limit=16, candidates=4)  # 2 steps per task: 30 small runs
    p.add_argument("--seeds", type=cli.csv_ints, default=[0, 1])
    cli.add_out(p, "rivals")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def fill(report: dict[str, Any], workload: Workload, root: Path) -> None:
        report["rivals"] = measure(workload, root, args)

    return cli.run(argv, args, fill, lambda report: print_section(report["rivals"]))


if __name__ == "__main__":
    raise SystemExit(main())
