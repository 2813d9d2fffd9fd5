"""gpo-ray against the endpoint's physical limit, the sequential reference and the paper's loop, in one run.

    .venv/bin/python -m benchmarks.speedup                    # 27 tasks: about 2 minutes on 2 cores
    .venv/bin/python -m benchmarks.speedup --tasks 3 --out /tmp/s.json

The fake endpoint (gpo_ray.testing.ProcessFake) runs in its own process with a fixed latency per request and a
fixed number of concurrent slots, so its capacity (slots / latency, calls per second) is the limit nobody can beat.
On the same endpoint, tasks and calls: gpo-ray's actor system; the sequential reference (tasks in series, a step's
calls concurrent); the paper's loop (one call after another), measured on --paper-loop-tasks tasks and projected
per call to the whole workload. Reported: utilization over the whole run and over the endpoint's active window, per
phase (generation = optimizer calls, scoring = task-model calls); the speed-ups; whether the results are identical;
CPU seconds of the driver and every actor process per LLM call; peak RSS of each process, per task.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.measure import endpoint_capacity
from benchmarks.harness.runs import distributed_run, sequential_run, strip
from benchmarks.harness.workload import (
    Workload,
    endpoint_config,
    run_config,
)
from gpo_ray.config import DEFAULT_IN_FLIGHT
from gpo_ray.core.plan import plan_task
from gpo_ray.testing import ProcessFake


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paper-loop-tasks", type=int, default=1,
                   help="tasks the one-call-at-a-time loop runs on (its time for all tasks is projected per call "
                        "unless this equals --tasks)")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the sequential reference and the paper's loop (--no-reference: gpo-ray alone, "
                        "for runs of hundreds of tasks)")
    p.add_argument("--memory-shards", type=int, default=None,
                   help="cluster.memory_shards of the gpo-ray run (default: gpo-ray's, chosen by the task count)")
    p.add_argument("--sample-interval", type=float, default=2.0,
                   help="seconds between samples of completed steps per task and RSS while the run goes")
    p.add_argument("--keep-results", action="store_true",
                   help="keep every task's result of the three runs in the JSON (to compare two versions)")


def measure(workload: Workload, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The report's keys from "endpoint" to "memory_per_task_mb". Needs Ray started (`cli.start_ray`)."""
    report: dict[str, Any] = {}
    with ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots)) as endpoint:
        report["endpoint"] = {"slots": args.slots, "latency_s": args.latency,
                              "capacity": endpoint_capacity(endpoint.config)}
        settings = run_config(workload, endpoint.base_url, root, args, evaluators=1).optimizer
        plans = [plan_task(t, settings, optimizer_max_tokens=64, task_max_tokens=64) for t in workload.tasks]
        report["planned_calls"] = sum(p.task_model_calls + p.optimizer_calls for p in plans)
        print(f"main run: {len(workload.tasks)} tasks, ~{report['planned_calls']} calls planned", flush=True)
        main_run = distributed_run(workload, endpoint, root, args, evaluators=args.evaluators)
        print(f"  distributed {main_run['wall_s']:.1f} s", flush=True)
        if not args.reference:
            report["main"] = main_run if args.keep_results else strip(main_run)
            report["memory_per_task_mb"] = main_run["peak_rss_total_mb"] / len(workload.tasks)
            return report
        seq = sequential_run(workload, endpoint, args, in_flight=args.max_in_flight or DEFAULT_IN_FLIGHT, root=root)
        print(f"  sequential reference {seq['wall_s']:.1f} s", flush=True)
        paper_tasks = min(args.paper_loop_tasks, len(workload.tasks))
        paper = sequential_run(workload.subset(paper_tasks), endpoint, args, in_flight=1, root=root)
        print(f"  paper's loop on {paper_tasks} task(s) {paper['wall_s']:.1f} s", flush=True)
    keep = (lambda run: run) if args.keep_results else strip
    report["main"] = keep(main_run)
    report["sequential_reference"] = keep(seq)
    report["paper_loop"] = keep(paper)
    report["identical_results"] = main_run["results"] == seq["results"]
    report["speedup_vs_sequential"] = seq["wall_s"] / main_run["wall_s"]
    main_calls = main_run["utilization"]["calls"]
    if paper_tasks == len(workload.tasks):
        paper_wall, basis = paper["wall_s"], "measured on all tasks"
    else:
        paper_wall = paper["wall_s"] / max(paper["calls"], 1) * main_calls
        basis = (f"measured on {paper_tasks} task(s): {paper['wall_s'] / max(paper['calls'], 1) * 1000:.0f} ms "
                 f"per call x {main_calls} calls")
    report["paper_loop_projected_wall_s"] = paper_wall
    report["paper_loop_basis"] = basis
    report["speedup_vs_paper_loop"] = paper_wall / main_run["wall_s"]
    report["memory_per_task_mb"] = main_run["peak_rss_total_mb"] / len(workload.tasks)
    return report


def print_section(report: dict[str, Any]) -> None:
    m, seq = report["main"], report.get("sequential_reference")
    u = m["utilization"]
    print(f"\nworkload: {report['workload']['tasks']} tasks, {report['workload']['source']}; endpoint "
          f"{report['endpoint']['slots']} slots x {report['endpoint']['latency_s'] * 1000:.0f} ms = "
          f"{report['endpoint']['capacity']:.0f} calls/s")
    print(f"{'':38}{'wall s':>9}{'calls':>8}{'util':>7}{'util*':>7}{'gen':>7}{'score':>7}{'CPU ms/call':>12}")
    rows = [("gpo-ray (distributed)", m)] + ([("sequential reference", seq)] if seq else [])
    if report.get("paper_loop"):
        rows.append(("paper's loop (one call at a time)", report["paper_loop"]))
    for name, r in rows:
        ru = r["utilization"]
        print(f"{name:38}{r['wall_s']:9.1f}{ru['calls']:8d}{ru['whole_run']:7.2f}{ru['active_window']:7.2f}"
              f"{ru['generation']:7.2f}{ru['scoring']:7.2f}{r['cpu_ms_per_call']:12.2f}")
    print("util = calls/s / capacity over the whole run; util* = over the endpoint's active window")
    if seq:
        print(f"speed-up vs sequential reference: {report['speedup_vs_sequential']:.1f}x; vs the paper's loop: "
          f"{report['speedup_vs_paper_loop']:.1f}x ({report['paper_loop_basis']}); identical results: "
          f"{report['identical_results']}")
    print(f"orchestration CPU: {m['cpu_ms_per_call']:.2f} ms per call, {m['cpu_ms_per_step']:.1f} ms per step "
          f"({m['steps']} steps; memory shards {m['memory_shards']}) (" + ", ".join(
        f"{k} {m['cpu_s'][k]:.1f} s" for k in ("driver", "memory", "refiner", "evaluator")) + f" for {u['calls']} calls; the endpoint's "
          f"own {m['cpu_s'].get('endpoint (not counted)', 0):.1f} s not counted)")
    print(f"start-up (optimize() to the first request) {u['startup_s']:.1f} s, tail {u['tail_s']:.1f} s, "
          f"endpoint active {u['active_window_s']:.1f} s")
    print("peak RSS MB (largest process of each kind): " + ", ".join(f"{k} {v:.0f}" for k, v in m["peak_rss_mb"].items())
          + f"; all {len(m['processes'])} processes {m['peak_rss_total_mb']:.0f}, per task {report['memory_per_task_mb']:.2f}")
    going = m["progress"]["while_running"]
    print(f"fairness (completed steps across tasks, {going['samples']} samples between 10% and 90% of all steps): "
          f"max spread {going['max_spread']}, stdev mean {going['mean_stdev']} max {going['max_stdev']}")
    rj = m["results_json"]
    print(f"results.json {rj['bytes'] / 2**20:.2f} MB, rewritten at most once a second while the run goes: "
          f"{rj['rewrite_cpu_ms']:.1f} ms CPU ({rj['rewrite_wall_ms']:.0f} ms wall) after a step; serialising "
          f"every task {rj['full_rewrite_cpu_ms']:.1f} ms CPU")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("speedup", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    add_arguments(p)
    cli.add_out(p, "speedup")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(argv, args, lambda report, workload, root: report.update(measure(workload, root, args)),
                   print_section)


if __name__ == "__main__":
    raise SystemExit(main())
