"""The LLM judge's share of a run (issue 24): calls, tokens and wall time per role, in one run of judge-scored tasks
against the fake endpoint, and the same run with the judge replaced by a Python metric of the same verdicts.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.judge_share                 # 4 tasks, 100 ms a call, 16 slots
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.judge_share --latency 0.05 --slots 8 --out /tmp/judge_share.json

The tasks are small tables (CSV train/eval/test of sums) written to a scratch folder, scored by
`{kind: judge, rubric: ..., scale: [1, 5]}` and answered by the fake endpoint (`ProcessFake`, its scripted judge:
top score when the reply holds the reference answer) at a fixed latency per call and a number of slots. Each run is
`optimize()` on a local Ray. What is reported, per role (usage.json's task_model, optimizer, judge):

- calls, requests, tokens, and each role's share of all calls and of all tokens (usage.json);
- what the endpoint served of each role, and its busy time: the union of the intervals in which at least one of the
  role's requests was in service (the endpoint's own timeline: service start and end of every request, on the
  machine's monotonic clock), over the run's wall time; and the time in which that role alone was in service (the
  endpoint served nothing else);
- the same run with the judge replaced by `benchmarks/judge_share_metric.py:holds_answer`, a Python metric that
  gives the scripted judge's verdicts and reasons: same scores, same trajectory, no judge calls. The judged run's
  wall time over this one's is what the judge costs, measured, not assumed;
- `gpo-ray plan`'s judge_calls for the same config (core/plan.py), beside the judge's calls in usage.json and the
  judge requests the endpoint received.

Wall time is `optimize()`'s (Ray's actors started and stopped included) and the endpoint's span (first request in
service to last one done): the second is the part of the run in which calls were made. The runs have no response
cache unless --cache: the fake task model's reply to a question is the same text under every prompt, so with a cache
most judge requests would be answered from it, which a real task model's varied replies would not allow.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.cli import (
    add_options,
    add_out,
    default_actor_counts,
    finish,
    new_report,
    parser,
    quiet_logging,
    start_ray,
)

METRIC_FILE = Path(__file__).with_name("judge_share_metric.py")
JUDGE = {"kind": "judge", "rubric": "The reply gives the correct sum.", "scale": [1, 5]}
PYTHON = {"kind": "python", "function": f"{METRIC_FILE}:holds_answer"}
SKILLS = {"step by step": 0.25, "carefully": 0.15}
STEMS = ("Think step by step", "Work carefully", "Be concise", "Check the sum", "Answer directly", "Add the numbers",
         "Show the working", "Read the question twice")


def phrases(n: int) -> list[str]:
    """The fake optimizer's `n` phrases (it appends one to the current prompt, chosen by a hash of the request):
    many, so that a step's candidates are new prompts as a real optimizer's mostly are; few (8 or less), and
    candidates repeat, which the loop drops unscored."""
    if n <= len(STEMS):
        return [f"{stem}." for stem in STEMS[:n]]
    return [f"{STEMS[i % len(STEMS)]} (note {i})." for i in range(n)]

ROLES = ("task_model", "optimizer", "judge")  # usage.json's sections (gpo_ray.vocabulary.Role)
# The fake's reply roles of each of the run's roles (tests/integration/usage_checks.py).
ENDPOINT_ROLES = {"task": "task_model", "optimizer": "optimizer", "feedback": "optimizer", "summarize": "optimizer",
                  "judge": "judge"}


def write_task(folder: Path, *, seed: int, sizes: dict[str, int]) -> None:
    """A table task: train/eval/test CSV files of addition questions (`input`, `target`); the same seed, the same
    task. Questions of at least 40 characters (the fake finds them in its answer key by their prefix)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["input", "target"])
            for _ in range(n):
                a, b = rng.randint(2, 999), rng.randint(2, 999)
                writer.writerow([f"Table task {seed}: what is {a} + {b}? Answer with the number.", str(a + b)])


def busy_seconds(intervals: Iterable[tuple[float, float, str]], *, start: float, end: float
                 ) -> tuple[dict[str, float], dict[str, float], float]:
    """From (start, end, role) intervals, each clipped to [start, end]: per role the time at least one of its
    intervals was open (their union), per role the time it alone had one open, and the time any was open."""
    events: list[tuple[float, int, str]] = []
    for s, e, role in intervals:
        s, e = max(s, start), min(e, end)
        if e > s:
            events += [(s, 1, role), (e, -1, role)]
    events.sort(key=lambda x: (x[0], x[1]))
    open_: Counter[str] = Counter()
    busy: dict[str, float] = defaultdict(float)
    alone: dict[str, float] = defaultdict(float)
    anything = 0.0
    previous: float | None = None
    for t, change, role in events:
        if previous is not None and t > previous:
            roles = [r for r, n in open_.items() if n > 0]
            for r in roles:
                busy[r] += t - previous
            if len(roles) == 1:
                alone[roles[0]] += t - previous
            if roles:
                anything += t - previous
        open_[role] += change
        previous = t
    return dict(busy), dict(alone), anything


def role_figures(usage: dict[str, Any], served: dict[str, int], timeline: Sequence[tuple[float, float, str]], *,
                 started: float, wall: float) -> dict[str, dict[str, Any]]:
    """Per role: usage.json's counts and tokens, their shares of the run's, what the endpoint served of it and its
    busy and alone time, as seconds and as shares of the wall time and of the endpoint's span."""
    runs = [(s, e, ENDPOINT_ROLES.get(r, r)) for s, e, r in timeline]
    busy, alone, _ = busy_seconds(runs, start=started, end=started + wall)
    span = (max(e for _, e, _ in runs) - min(s for s, _, _ in runs)) if runs else 0.0
    service: dict[str, float] = defaultdict(float)
    for s, e, role in runs:
        service[role] += e - s
    endpoint: Counter[str] = Counter()
    for r, n in served.items():
        endpoint[ENDPOINT_ROLES.get(r, r)] += n
    calls = sum(usage.get(r, {}).get("calls", 0) for r in ROLES)
    tokens = sum(_tokens(usage.get(r, {})) for r in ROLES)
    out = {}
    for role in ROLES:
        u = usage.get(role, {})
        out[role] = {
            "calls": u.get("calls", 0), "requests": u.get("requests", 0), "cache_hits": u.get("cache_hits", 0),
            "prompt_tokens": u.get("prompt_tokens", 0), "completion_tokens": u.get("completion_tokens", 0),
            "tokens": _tokens(u), "call_share": u.get("calls", 0) / calls if calls else 0.0,
            "token_share": _tokens(u) / tokens if tokens else 0.0,
            "endpoint_requests": endpoint.get(role, 0), "service_s": service.get(role, 0.0),
            "busy_s": busy.get(role, 0.0), "busy_share": busy.get(role, 0.0) / wall if wall else 0.0,
            "busy_share_of_span": busy.get(role, 0.0) / span if span else 0.0,
            "alone_s": alone.get(role, 0.0), "alone_share": alone.get(role, 0.0) / wall if wall else 0.0,
        }
    return out


def _tokens(u: dict[str, Any]) -> int:
    return int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))


def run_config(root: Path, names: Sequence[str], base_url: str, args: argparse.Namespace, *, metric: dict[str, Any],
               label: str) -> Any:
    """The run: the tasks under root/data scored by `metric`, every role at the fake endpoint; without a response cache
    unless --cache (every call a request: the judge's calls are what the endpoint receives)."""
    from gpo_ray.config import RunConfig

    role = {"base_url": base_url, "model": "fake-llm", "max_in_flight": args.max_in_flight, "timeout_s": 60}
    return RunConfig.model_validate({
        "tasks": list(names),
        "task_sources": [{"name": n, "format": "csv", "path": str(root / "data" / n.split("/")[1]), "metric": metric}
                         for n in names],
        "task_model": role | {"max_tokens": 64},
        "optimizer_model": role | {"temperature": 1.0},
        "judge_model": role,  # its own sampling defaults: temperature 0, 200 tokens
        "optimizer": {"epochs": args.epochs, "batch_size": args.batch_size, "candidates": args.candidates, "seed": 3,
                      "eval_limit": args.eval_limit, "initial_prompt": "Answer the question.",
                      "direction": args.direction},
        "cluster": {"num_refiners": args.refiners, "num_evaluators": args.evaluators,
                    "evaluator_max_in_flight": args.evaluator_max_in_flight},
        "run_dir": str(root / f"run-{label}"),
        "cache": args.cache,
    })


def planned(config: Any) -> dict[str, Any]:
    """What `gpo-ray plan` says of the config (the same calls as cmd_plan): per task and in all."""
    from gpo_ray.core.plan import plan_task
    from gpo_ray.tasks.registry import resolve_tasks

    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    plans = [plan_task(t, config.optimizer, optimizer_max_tokens=config.optimizer_model.max_tokens or 256,
                       task_max_tokens=config.task_model.max_tokens or 256,
                       judge_max_tokens=config.judge_model.max_tokens or 256) for t in tasks]
    keys = ("judge_calls", "task_model_calls", "optimizer_calls", "judge_tokens")
    return {"tasks": {p.task: {k: getattr(p, k) for k in keys} for p in plans},
            "total": {k: sum(getattr(p, k) for p in plans) for k in keys}}


def unscored(config: Any) -> dict[str, Any]:
    """Why a finished run scored fewer examples than `plan` counts (plan's counts are upper bounds; with a judge metric
    each scored example is one judge call), from its checkpoints and results.json, per task and in all:
    - `candidates`: the scorings of candidates asked for but not scored (a repeat of a prompt of this step or an
      earlier one, or rejected): plan counts every step's `candidates` x batch;
    - `no_candidate`: the eval split not scored for steps that had no candidate to choose;
    - `test_once`: the test split scored once, not twice, where the best prompt is the initial one.
    For this benchmark's settings (candidates scored on the training batch, no traced scores)."""
    from gpo_ray.core.loop import train_examples
    from gpo_ray.tasks.registry import resolve_tasks

    settings = config.optimizer
    run_dir = Path(config.run_dir)
    doc = json.loads((run_dir / "results.json").read_text())
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted((run_dir / "checkpoints").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("step", 0) > 0:
                steps[record["task"]].append(record)
    per_task = {}
    for task in resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources):
        batch = min(settings.batch_size, len(train_examples(task, settings)))
        n_eval = min(len(task.eval), settings.eval_limit or len(task.eval))
        n_test = min(len(task.test), settings.test_limit or len(task.test)) if settings.evaluate_test else 0
        entry = doc["tasks"][task.name]
        records = steps[task.name]
        per_task[task.name] = {
            "candidates": sum(settings.candidates * batch - r["counts"].get("scoring_calls", 0) for r in records),
            "no_candidate": n_eval * sum(1 for r in records if not r["candidates"]),
            "test_once": n_test if entry["best_prompt"] == entry["initial_prompt"] else 0,
            "duplicates": sum(r["counts"].get("duplicate", 0) for r in records),
        }
    total = {k: sum(t[k] for t in per_task.values()) for k in ("candidates", "no_candidate", "test_once", "duplicates")}
    return {"tasks": per_task, "total": total}


def one_run(config: Any, endpoint: Any) -> dict[str, Any]:
    """`optimize()` on the running Ray; the endpoint's counters and timeline, usage.json, per-role figures."""
    from gpo_ray.api import optimize

    endpoint.reset()
    started = time.monotonic()
    results = optimize(config)
    wall = time.monotonic() - started
    stats = endpoint.stats()
    timeline = endpoint.timeline()
    run_dir = Path(config.run_dir)
    usage = json.loads((run_dir / "usage.json").read_text())
    doc = json.loads((run_dir / "results.json").read_text())
    first = min((s for s, _, _ in timeline), default=started)
    last = max((e for _, e, _ in timeline), default=started)
    return {
        "status": doc["status"], "wall_s": wall, "endpoint_span_s": last - first,
        "startup_s": first - started, "shutdown_s": started + wall - last,
        "steps": sum(len(r.steps) for r in results.tasks.values()),
        "endpoint": {k: stats[k] for k in ("requests", "completed", "roles", "prompt_tokens", "completion_tokens",
                                           "peak_in_service", "duplicates")},
        "roles": role_figures(usage, stats["roles"], timeline, started=started, wall=wall),
        "usage": usage,
        "unscored": unscored(config),
        "scores": {n: {"initial_eval": e["initial_eval_score"], "best_eval": e["best_eval_score"],
                       "best_prompt": e["best_prompt"]} for n, e in doc["tasks"].items()},
    }


def measure(report: dict[str, Any], args: argparse.Namespace, root: Path) -> None:
    """Write the tasks under `root`, start the endpoint, and run them twice on the running Ray, scored by the judge
    and by the Python metric: the report's setup, plan, runs and the judge's summary."""
    from gpo_ray.tasks.types import Example
    from gpo_ray.testing import FakeLLMConfig, ProcessFake, answer_key_from_examples

    sizes = {"train": args.train, "eval": args.eval, "test": args.test}
    names = [f"sums/t{i}" for i in range(args.tasks)]
    for i, name in enumerate(names):
        write_task(root / "data" / name.split("/")[1], seed=i, sizes=sizes)
    examples = []
    for name in names:
        for split in sizes:
            with open(root / "data" / name.split("/")[1] / f"{split}.csv", newline="") as f:
                examples += [Example(r["input"], (r["target"],)) for r in csv.DictReader(f)]
    fake = FakeLLMConfig(latency_s=args.latency, concurrency=args.slots, answer_key=answer_key_from_examples(examples),
                         skill_phrases=SKILLS, optimizer_phrases=phrases(args.phrases), base_accuracy=0.4,
                         record_timeline=True)
    report["setup"] = {"tasks": args.tasks, "splits": sizes, "latency_s": args.latency, "slots": args.slots,
                       "epochs": args.epochs, "candidates": args.candidates, "batch_size": args.batch_size,
                       "eval_limit": args.eval_limit, "direction": args.direction, "phrases": args.phrases,
                       "evaluators": args.evaluators, "refiners": args.refiners,
                       "evaluator_max_in_flight": args.evaluator_max_in_flight,
                       "max_in_flight": args.max_in_flight, "cache": args.cache, "order": args.order}
    with ProcessFake(fake) as endpoint:
        configs = {label: run_config(root, names, endpoint.base_url, args, metric=metric, label=label)
                   for label, metric in (("judge", JUDGE), ("python", PYTHON))}
        report["plan"] = planned(configs["judge"])
        order = ("judge", "python") if args.order == "judge-first" else ("python", "judge")
        runs = {label: one_run(configs[label], endpoint) for label in order}
    report["runs"] = {label: runs[label] for label in ("judge", "python")}
    judged, plain = runs["judge"], runs["python"]
    judge = judged["roles"]["judge"]
    gap = judged["unscored"]["total"]
    plan_calls = report["plan"]["total"]["judge_calls"]
    report["judge"] = {
        "plan_calls": plan_calls, "calls": judge["calls"],
        "plan_less_unscored": plan_calls - gap["candidates"] - gap["no_candidate"] - gap["test_once"],
        "unscored": gap, "plan_tokens": report["plan"]["total"]["judge_tokens"], "tokens": judge["tokens"],
        "requests": judge["requests"], "endpoint_requests": judge["endpoint_requests"],
        # Both runs send the same task-model and optimizer requests (same scores, same trajectory): the judged run's
        # extra answers to a request answered before are judge requests asked again (same input, reference, reply).
        "repeated_requests": judged["endpoint"]["duplicates"] - plain["endpoint"]["duplicates"],
        "task_model_calls": judged["roles"]["task_model"]["calls"],
        "call_share": judge["call_share"], "token_share": judge["token_share"],
        "busy_share": judge["busy_share"], "busy_share_of_span": judge["busy_share_of_span"],
        "alone_share": judge["alone_share"],
        "wall_s": judged["wall_s"], "wall_s_without": plain["wall_s"],
        "wall_ratio": judged["wall_s"] / plain["wall_s"],
        "wall_extra_share": (judged["wall_s"] - plain["wall_s"]) / judged["wall_s"],
        "span_s": judged["endpoint_span_s"], "span_s_without": plain["endpoint_span_s"],
        "span_ratio": judged["endpoint_span_s"] / plain["endpoint_span_s"] if plain["endpoint_span_s"] else None,
        "same_scores": judged["scores"] == plain["scores"],
        "same_task_model_calls": judged["roles"]["task_model"]["calls"] == plain["roles"]["task_model"]["calls"],
    }


def show(report: dict[str, Any]) -> None:
    s = report["setup"]
    print(f"{s['tasks']} table tasks ({s['splits']['train']}/{s['splits']['eval']}/{s['splits']['test']}), "
          f"{s['epochs']} epoch(s), {s['candidates']} candidates, batch {s['batch_size']}, direction {s['direction']}; "
          f"endpoint {s['latency_s'] * 1000:.0f} ms a call, {s['slots']} slots; {s['evaluators']} evaluators x "
          f"{s['evaluator_max_in_flight']} in flight; cache {'on' if s['cache'] else 'off'}; {s['order']}")
    for label in ("judge", "python"):
        r = report["runs"][label]
        print(f"\n{label} metric: wall {r['wall_s']:.1f} s (endpoint span {r['endpoint_span_s']:.1f} s, "
              f"first call after {r['startup_s']:.1f} s), {r['steps']} steps, status {r['status']}")
        print("| role | calls | share of calls | tokens | share of tokens | endpoint requests | busy s | busy / wall "
              "| busy / span | alone / wall |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for role, f in r["roles"].items():
            print(f"| {role} | {f['calls']:,} | {f['call_share']:.1%} | {f['tokens']:,} | {f['token_share']:.1%} "
                  f"| {f['endpoint_requests']:,} | {f['busy_s']:.1f} | {f['busy_share']:.1%} "
                  f"| {f['busy_share_of_span']:.1%} | {f['alone_share']:.1%} |")
    j = report["judge"]
    print(f"\njudge calls: plan {j['plan_calls']:,}, usage.json {j['calls']:,}, endpoint received "
          f"{j['endpoint_requests']:,} (task-model calls {j['task_model_calls']:,}); of these requests "
          f"{j['repeated_requests']:,} repeat an earlier one word for word (a response cache would answer them)")
    g = j["unscored"]
    print(f"  plan counts every candidate and both test scorings: less {g['candidates']:,} scorings of candidates not "
          f"scored ({g['duplicates']:,} duplicates), {g['no_candidate']:,} of steps without a candidate, "
          f"{g['test_once']:,} of a test split scored once = {j['plan_less_unscored']:,}")
    print(f"judge tokens: plan {j['plan_tokens']:,} (estimate, replies at the cap), usage.json {j['tokens']:,}")
    print(f"judge's share: {j['call_share']:.1%} of calls, {j['token_share']:.1%} of tokens, busy "
          f"{j['busy_share']:.1%} of the wall time ({j['busy_share_of_span']:.1%} of the endpoint span), alone "
          f"{j['alone_share']:.1%}")
    span_ratio = f"{j['span_ratio']:.2f}" if j["span_ratio"] is not None else "n/a"
    print(f"wall with the judge / with the Python metric: {j['wall_s']:.1f} s / {j['wall_s_without']:.1f} s = "
          f"{j['wall_ratio']:.2f} (endpoint span {j['span_s']:.1f} / {j['span_s_without']:.1f} s = {span_ratio}); "
          f"same scores: {j['same_scores']}, same task-model calls: {j['same_task_model_calls']}")


def build_parser() -> argparse.ArgumentParser:
    p = parser("judge_share", __doc__)
    p.add_argument("--tasks", type=int, default=4, help="table tasks in the run")
    p.add_argument("--train", type=int, default=48, help="training examples per task")
    p.add_argument("--eval", type=int, default=16, help="eval examples per task")
    p.add_argument("--test", type=int, default=16, help="test examples per task")
    p.add_argument("--phrases", type=int, default=200,
                   help="the fake optimizer's distinct phrases: few (8) make duplicate candidates, not scored")
    p.add_argument("--direction", choices=("none", "feedback"), default="none", help="optimizer.direction")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False,
                   help="the runs' response cache (a user's default; off here: every call is a request, as with a "
                        "real task model, whose replies to different prompts seldom repeat word for word)")
    p.add_argument("--order", choices=("judge-first", "python-first"), default="judge-first",
                   help="which run goes first on the benchmark's Ray")
    add_options(p, "--latency", "--slots", "--evaluators", "--refiners", "--evaluator-max-in-flight",
                "--max-in-flight", "--epochs", "--candidates", "--batch-size", "--eval-limit")
    # A user's run by default: the config's in-flight bounds, the actors `gpo-ray optimize` starts for --tasks tasks.
    p.set_defaults(slots=16, evaluator_max_in_flight=8, max_in_flight=8, eval_limit=None, epochs=2)
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="write the tasks and both runs' folders here and keep them (default: a scratch folder)")
    add_out(p, "judge_share")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_actor_counts(args, tasks=args.tasks)
    quiet_logging()
    started = time.perf_counter()
    start_ray()
    report = new_report(argv)
    try:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            measure(report, args, args.keep)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                measure(report, args, Path(tmp))
    finally:
        import ray

        ray.shutdown()
    show(report)
    finish(report, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
