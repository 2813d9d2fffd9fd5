"""Run-wide rate limits: does the endpoint see the configured requests per minute across 4 evaluators, and what does
a permit cost?

    .venv/bin/python -m benchmarks.rate_limits                     # about 3 minutes on 2 cores
    .venv/bin/python -m benchmarks.rate_limits --minute-seconds 0   # only the cost section (about 1 minute)

Two sections, in one run, against the fake endpoint in its own process (gpo_ray.testing.ProcessFake, which records
when it served each request); 4 evaluator actors score items that are all handed out at the start, so work waits
for the whole span:

- **minute:** requests_per_minute 600 (the issue's example), for --minute-seconds (default 90): the most requests
  the endpoint served in any 60 s window, and utilization (requests over the served span / the configured rate).
- **cost:** a high rate (--fast-rpm, default 12,000 a minute = 200/s) for --fast-seconds each, three ways: the
  run-wide limiter; per-actor buckets of a quarter of the rate each (what a user had to do by hand before, the same
  total); and per-actor buckets of the full rate (the old behaviour: each actor took the whole limit). CPU per call
  is measured from /proc for the evaluator processes and the limiter process, per request the endpoint served.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.measure import ProcessSampler
from gpo_ray.testing import FakeLLMConfig, ProcessFake
from gpo_ray.testing.stats import most_in_any_window

EVALUATORS = 4
MAX_IN_FLIGHT = 8


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("rate_limits", __doc__)
    p.add_argument("--minute-rpm", type=float, default=600)
    p.add_argument("--minute-seconds", type=float, default=90, help="0 skips the minute section")
    p.add_argument("--fast-rpm", type=float, default=12_000)
    p.add_argument("--fast-seconds", type=float, default=20)
    p.add_argument("--latency", type=float, default=0.02, help="endpoint seconds per request")
    cli.add_out(p, "rate_limits")
    return p.parse_args(argv)




def one_run(endpoint: ProcessFake, *, rpm: float, mode: str, seconds: float) -> dict[str, Any]:
    """4 evaluators with `rpm` per minute: `run_wide` (the limiter), `per_actor_share` (rpm / 4 each) or
    `per_actor_full` (rpm each, the old behaviour), scoring enough items for `seconds` at the intended total rate."""
    import ray

    from gpo_ray.actors.evaluator import EvaluatorActor, ScoreItem
    from gpo_ray.actors.limiter import LimiterClient, start_rate_limiter
    from gpo_ray.api import ACTOR_OPTIONS
    from gpo_ray.config import LLMRoleConfig
    from gpo_ray.core.evaluation import TaskModelParams
    from gpo_ray.tasks.types import Example
    from gpo_ray.vocabulary import MetricKind

    per_actor_rpm = {"run_wide": rpm, "per_actor_share": rpm / EVALUATORS, "per_actor_full": rpm}[mode]
    role = LLMRoleConfig(base_url=endpoint.base_url, model="fake-llm", max_tokens=16,
                         requests_per_minute=per_actor_rpm, max_in_flight=MAX_IN_FLIGHT)
    name = f"gpo-limiter-bench-{uuid.uuid4().hex[:8]}"
    limiter = start_rate_limiter(name) if mode == "run_wide" else None
    permits = LimiterClient(name) if limiter is not None else None
    actors = [EvaluatorActor.options(**ACTOR_OPTIONS).remote(role, base_url=endpoint.base_url, model="fake-llm",
                                                             cache_dir=None, params=TaskModelParams(max_tokens=16),
                                                             max_in_flight=MAX_IN_FLIGHT, permits=permits)
              for _ in range(EVALUATORS)]
    handles = [*actors, *([limiter] if limiter is not None else [])]
    try:
        pids = ray.get([h.pid.remote() for h in handles], timeout=120)
        total_rate = per_actor_rpm * (EVALUATORS if mode != "run_wide" else 1) / 60
        items = math.ceil(total_rate * seconds / EVALUATORS)
        endpoint.reset()
        with ProcessSampler() as sampler:
            for i, pid in enumerate(pids):
                sampler.add(pid, "evaluator" if i < EVALUATORS else "limiter")
            started = time.perf_counter()
            ray.get([a.score.remote([ScoreItem(prompt="Answer.", example=Example(f"{mode}-{i}-{j}?", ("a",)),
                                               metric=MetricKind.EXACT_MATCH) for j in range(items)])
                     for i, a in enumerate(actors)])
            wall = time.perf_counter() - started
        granted = ray.get(limiter.granted.remote()) if limiter is not None else {}
    finally:
        for h in handles:
            ray.kill(h)
    times = sorted(start for start, _, role_ in endpoint.timeline() if role_ == "task")
    span = times[-1] - times[0]
    calls = len(times)
    leases = sum(g["leases"] for g in granted.values())
    return {
        "mode": mode, "configured_rpm": rpm, "calls": calls, "wall_s": wall, "served_span_s": span,
        "rate_over_configured": calls / span / (rpm / 60) if span > 0 else None,
        "most_in_any_60s": most_in_any_window(times, 60.0) if span >= 60 else None,
        "most_in_any_6s": most_in_any_window(times, 6.0),
        "evaluator_cpu_us_per_call": sampler.cpu_seconds("evaluator") / calls * 1e6,
        "limiter_cpu_us_per_call": sampler.cpu_seconds("limiter") / calls * 1e6 if limiter is not None else 0.0,
        "calls_per_lease": calls / leases if leases else None,
    }


def show(report: dict[str, Any]) -> None:
    if report.get("minute"):
        m = report["minute"]
        print(f"\nminute: {m['calls']} calls in {m['served_span_s']:.1f} s at {m['configured_rpm']:.0f}/min; "
              f"most in any 60 s: {m['most_in_any_60s']}; utilization {m['rate_over_configured']:.3f}")
    print(f"\n{'mode':18}{'rpm':>8}{'calls':>7}{'rate/cfg':>9}{'max 6s':>8}{'eval us/call':>13}"
          f"{'limiter us/call':>16}{'calls/lease':>12}")
    for r in report["cost"]:
        per_lease = f"{r['calls_per_lease']:.1f}" if r["calls_per_lease"] else "-"
        print(f"{r['mode']:18}{r['configured_rpm']:8.0f}{r['calls']:7d}{r['rate_over_configured']:9.3f}"
              f"{r['most_in_any_6s']:8d}{r['evaluator_cpu_us_per_call']:13.0f}{r['limiter_cpu_us_per_call']:16.0f}"
              f"{per_lease:>12}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.quiet_logging()
    started = time.perf_counter()
    cli.start_ray()
    report = cli.new_report(argv)
    try:
        with ProcessFake(FakeLLMConfig(record_timeline=True, latency_s=args.latency, concurrency=64)) as endpoint:
            if args.minute_seconds > 0:
                report["minute"] = one_run(endpoint, rpm=args.minute_rpm, mode="run_wide",
                                           seconds=args.minute_seconds)
            report["cost"] = [one_run(endpoint, rpm=args.fast_rpm, mode=mode, seconds=args.fast_seconds)
                              for mode in ("run_wide", "per_actor_share", "per_actor_full")]
    finally:
        import ray

        ray.shutdown()
    show(report)
    cli.finish(report, args.out, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
