"""Does a refactor change what gpo-ray does? The same three runs on this checkout and on an older revision, as a user
runs them (the CLI, a subprocess each), against a recording fake endpoint; then a comparison:

    .venv/bin/python -m benchmarks.same_results --rev 2b655c8            # this tree against 2b655c8
    .venv/bin/python -m benchmarks.same_results --rev main --tasks 3

The runs: `optimize` on --tasks BBH tasks (the throughput benchmark's shape, shorter), `sweep` of a 2-variant grid,
and `optimize --preset paper`. For each it compares the per-task results (results.json `tasks`), the calls and tokens
per role (usage.json), the requests by phase (the role and purpose each request names in its X-GPO headers), and the
requests the endpoint received (role, purpose, model, text, temperature, max_tokens),
as a multiset: order varies with concurrency, content must not. Exit 0 when all are equal.

The older side runs this file from this tree with PYTHONPATH set to a git worktree of --rev, so its gpo_ray (driver,
Ray workers and all) is the old code; only gpo_ray's public names and the testing fake are used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "datasets" / "gpo"  # as benchmarks/harness/workload.py
SKILLS = {"step by step": 0.3, "carefully": 0.2, "each option": 0.15}
PHRASES = ["Think step by step.", "Read each option carefully.", "Be concise.", "Check each option."]


def collect(out: Path, *, tasks: int, data_dir: Path, scratch: Path) -> None:
    """Run the three scenarios with the gpo_ray on sys.path; write what they did to `out`."""
    from gpo_ray.tasks.registry import resolve_tasks
    from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples

    scratch.mkdir(parents=True, exist_ok=True)
    bbh = resolve_tasks(["bbh/*"], data_dir=data_dir, sources=[])[:tasks]
    names = [t.name for t in bbh]
    key = answer_key_from_examples([e for t in bbh for e in (*t.train, *t.eval, *t.test)])
    fake_config = FakeLLMConfig(latency_s=0.02, concurrency=64, answer_key=key, skill_phrases=SKILLS,
                                optimizer_phrases=PHRASES, base_accuracy=0.3, record_requests=True)
    report: dict[str, Any] = {}
    common = {"data_dir": str(data_dir), "cache": False}
    optimizer = {"epochs": 2, "batch_size": 4, "candidates": 3, "seed": 3, "train_limit": 12, "eval_limit": 12,
                 "test_limit": 12, "initial_prompt": "Answer the question."}

    def roles(url: str) -> dict[str, Any]:
        return {"task_model": {"base_url": url, "model": "fake-llm", "max_tokens": 64},
                "optimizer_model": {"base_url": url, "model": "fake-llm", "temperature": 1.0,
                                    "structured_output": False}}

    scenarios: dict[str, tuple[list[str], dict[str, Any]]] = {
        "optimize": (["optimize"], {"tasks": names, "optimizer": optimizer}),
        "sweep": (["sweep"], {"base": {"tasks": names[:2], "optimizer": {**optimizer, "epochs": 1}},
                              "axes": {"optimizer.candidates": [2, 3]}, "seeds": [0]}),
        "paper": (["optimize", "--preset", "paper"], {"tasks": names[:2],
                                                      "optimizer": {"epochs": 1, "train_limit": 8, "eval_limit": 8,
                                                                    "test_limit": 8, "seed": 3}}),
    }
    for name, (command, body) in scenarios.items():
        with ThreadedFake(fake_config) as fake:
            where = scratch / name
            cfg = scratch / f"{name}.json"  # YAML is a superset of JSON
            if command[0] == "sweep":
                body = {**body, "base": {**body["base"], **common, **roles(fake.base_url)}}
                argv = [*command, str(cfg), "--run-dir", str(where), "--quiet"]
            else:
                body = {**body, **common, **roles(fake.base_url)}
                argv = [*command[:1], str(cfg), *command[1:], "--run-dir", str(where), "--quiet"]
            cfg.write_text(json.dumps(body))
            done = subprocess.run([sys.executable, "-m", "gpo_ray", *argv], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name}: gpo-ray {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}")
            requests = [json.dumps({k: r.get(k) for k in ("role", "sent_role", "sent_purpose", "model", "text",
                                                             "temperature", "max_tokens")}, sort_keys=True)
                        for r in fake.requests_log()]
        run_dirs = [where] if command[0] != "sweep" else sorted(p.parent for p in where.rglob("results.json"))
        report[name] = {
            "results": {str(d.relative_to(where)): json.loads((d / "results.json").read_text())["tasks"]
                        for d in run_dirs},
            "calls": {str(d.relative_to(where)): _calls_by_phase(d) for d in run_dirs},
            "requests": dict(Counter(requests)),
            "phases": dict(Counter(f"{r.get('sent_role')}/{r.get('sent_purpose')}" for r in fake.requests_log())),
        }
    out.write_text(json.dumps(report, sort_keys=True))


def _calls_by_phase(run_dir: Path) -> dict[str, Any]:
    usage = json.loads((run_dir / "usage.json").read_text())
    return {role: {k: entry.get(k) for k in ("calls", "requests", "prompt_tokens", "completion_tokens", "cache_hits")}
            for role, entry in usage.items() if isinstance(entry, dict)}


def side(python_path: Path, out: Path, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--collect", str(out), "--tasks", str(args.tasks),
                    "--data-dir", str(args.data_dir), "--scratch", str(scratch)], env=env, check=True, cwd=python_path)
    return json.loads(out.read_text())


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    rows = []
    for scenario in new:
        for part in ("results", "calls", "phases", "requests"):
            a, b = old.get(scenario, {}).get(part), new[scenario][part]
            if part == "requests":
                size = f"{sum(b.values())} requests"
            elif part == "phases":
                size = ", ".join(f"{k}: {v}" for k, v in sorted(b.items()))
            else:
                size = f"{len(b)} runs"
            rows.append((scenario, part, a == b, size))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.same_results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", help="the older revision to compare with")
    p.add_argument("--tasks", type=int, default=6)
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    p.add_argument("--collect", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.collect:
        collect(args.collect, tasks=args.tasks, data_dir=args.data_dir, scratch=args.scratch)
        return 0
    if not args.rev:
        p.error("--rev is required")
    if not (args.data_dir / "BIG-Bench-Hard").is_dir():
        p.error(f"the shared BBH data is not at {args.data_dir} (--data-dir)")
    with tempfile.TemporaryDirectory(prefix="same-results-") as tmp:
        root = Path(tmp)
        old_tree = root / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), args.rev],
                       check=True)
        try:
            old = side(old_tree, root / "old.json", args, root / "old-runs")
            new = side(ROOT, root / "new.json", args, root / "new-runs")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)
    rows = compare(old, new)
    print(f"this tree against {args.rev}, {args.tasks} BBH tasks:")
    print(f"{'run':<10} {'what':<10} {'equal':<6} size")
    for scenario, part, equal, size in rows:
        print(f"{scenario:<10} {part:<10} {'yes' if equal else 'NO':<6} {size}")
    return 0 if all(equal for *_, equal, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
