"""Hedged requests against an endpoint that stalls: call latency p50/p99 and wall time, hedging off and on.

    .venv/bin/python -m benchmarks.hedging                    # about a minute; JSON in benchmarks/results/
    .venv/bin/python -m benchmarks.hedging --calls 800 --stall-rate 0.05 --out /tmp/h.json

One run, one process, no Ray: the fake endpoint (`ProcessFake`, a process of its own) answers in 50-150 ms, and a
`--stall-rate` of its requests send their headers and first bytes and then nothing. The role's full client stack
(`build_client`, no cache) makes `--calls` calls, `--concurrency` at a time, once with hedging off and once on
(`hedge.enabled`, its defaults otherwise); `read_timeout_s` (`--read-timeout`) cuts a stall in both runs (the
idle-read limit, `idle_read_timeout_s`, is off here). Each run
has a fresh endpoint, so both see the same stalls for the same first requests. Reported per run: wall time, call
latency p50/p99/max, the requests the endpoint got, and the hedges sent/won/cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.harness import cli
from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.hedge import percentile
from gpo_ray.llm.protocol import ChatRequest, user_message
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.testing import FakeLLMConfig, ProcessFake


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("hedging", __doc__)
    p.add_argument("--calls", type=int, default=600, help="calls per run")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    p.add_argument("--stall-rate", type=float, default=0.03, help="share of requests that stall")
    p.add_argument("--read-timeout", type=float, default=10.0, help="read_timeout_s: a stall is cut after this")
    cli.add_out(p, "hedging")
    return p.parse_args(argv)


async def calls(base_url: str, role: LLMRoleConfig, n: int, concurrency: int) -> dict[str, Any]:
    counters = UsageCounters()
    client = build_client(role, role_name="task_model", base_url=base_url, model="fake", cache=None,
                          counters=counters)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await client.complete(ChatRequest(messages=user_message(f"What is {i} + {i}?"), max_tokens=32))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await close_client(client)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies), "requests": counters.requests, "errors": dict(counters.errors),
            "hedges": dict(counters.hedges)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    fake = FakeLLMConfig(latency_s=(0.05, 0.15), fault_rates={"stall": args.stall_rate}, concurrency=256)
    out: dict[str, Any] = {"calls": args.calls, "concurrency": args.concurrency, "stall_rate": args.stall_rate,
                           "read_timeout_s": args.read_timeout}
    for name, hedge in (("off", False), ("on", True)):
        # idle_read_timeout_s off: the read timeout alone cuts a stall, as when these figures were first measured
        # (benchmarks.stalls_default measures the idle-read limit that is on by default now).
        role = LLMRoleConfig(base_url="http://unused", read_timeout_s=args.read_timeout, idle_read_timeout_s=None,
                             max_retries=6,
                             max_in_flight=args.concurrency, hedge={"enabled": hedge})
        with ProcessFake(fake) as endpoint:
            out[name] = asyncio.run(calls(endpoint.base_url, role, args.calls, args.concurrency))
            out[name]["stalls_served"] = endpoint.stats()["faults"].get("stall", 0)
    out["ratios"] = {k: out["off"][k] / out["on"][k] for k in ("wall_s", "p99_s")}
    return out


def print_section(r: dict[str, Any]) -> None:
    print(f"\n{r['calls']} calls, {r['concurrency']} in flight, {r['stall_rate']:.0%} of requests stall, "
          f"read_timeout_s {r['read_timeout_s']:g}")
    print("| hedging | wall s | p50 s | p99 s | max s | requests | stalls | hedges sent / won / cancelled |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in ("off", "on"):
        x = r[name]
        h = x["hedges"]
        print(f"| {name} | {x['wall_s']:.1f} | {x['p50_s']:.3f} | {x['p99_s']:.3f} | {x['max_s']:.2f} | "
              f"{x['requests']} | {x['stalls_served']} | {h.get('sent', 0)} / {h.get('won', 0)} / "
              f"{h.get('cancelled', 0)} |")
    print(f"off / on: wall {r['ratios']['wall_s']:.1f}x, p99 {r['ratios']['p99_s']:.1f}x")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.quiet_logging()
    started = time.perf_counter()
    report = cli.new_report(argv)
    report["hedging"] = measure(args)
    print_section(report["hedging"])
    cli.finish(report, args.out, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
