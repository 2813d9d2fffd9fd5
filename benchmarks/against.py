"""The same benchmark on this checkout and on an older revision, alternating, in one session: ratios, not seconds.

    .venv/bin/python -m benchmarks.against --rev 059020d --rounds 3      # 27-task throughput, this tree vs 059020d
    .venv/bin/python -m benchmarks.against --rev main --rounds 2 -- --tasks 9 --epochs 2
    .venv/bin/python -m benchmarks.against --rev 059020d --old-args="--paper-loop-tasks 1" -- --no-scaling ...

This machine's speed moves by 1.5x within a day (other tenants), so an absolute figure from one run says little about
a change: the 27-task benchmark measured the same commit at 1.11 and at 1.56 ms of CPU per call hours apart. Run
side by side, old and new see the same machine. Each round runs `python -m benchmarks.throughput` once on each side
(the old one from a git worktree of `--rev`, created under the system's temp dir and removed at the end), in
alternating order, and the table gives each round's figures and the new/old ratio, then the range of the ratios.

Arguments after `--` go to both sides; `--old-args` adds to (or, for flags the old code lacks, replaces) the old
side's. Flags the old revision does not know are dropped with a note (e.g. `--no-reference` before it existed): the
old side then runs more than the new one, which changes its wall time but not the figures compared here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARGS = ("--tasks", "27", "--no-scaling", "--no-adaptive", "--no-reference")
# (label, path into the JSON's "main" section, lower is better)
FIGURES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("CPU ms per call", ("cpu_ms_per_call",), True),
    ("util, whole run", ("utilization", "whole_run"), False),
    ("util, endpoint active", ("utilization", "active"), False),
    ("start-up s (to the first request)", ("utilization", "startup_s"), True),
    ("wall s", ("wall_s",), True),
    ("driver CPU s", ("cpu_s", "driver"), True),
    ("memory CPU s", ("cpu_s", "memory"), True),
    ("refiner CPU s", ("cpu_s", "refiner"), True),
    ("evaluator CPU s", ("cpu_s", "evaluator"), True),
)


def _dig(doc: dict[str, Any], path: Sequence[str]) -> float | None:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    """The compared figures of one throughput JSON (None where that revision did not record one)."""
    main = result.get("main", result)
    util = main.get("utilization", {})
    # Older JSONs name the utilization keys differently; take what is there.
    aliases = {"whole_run": ("whole_run", "utilization", "whole"), "active": ("active", "active_window", "util_active")}
    normalised = dict(main)
    normalised["utilization"] = {**util, **{
        name: next((util[k] for k in keys if isinstance(util.get(k), (int, float))), None)
        for name, keys in aliases.items()
    }}
    return {label: _dig(normalised, path) for label, path, _ in FIGURES}


def _known_flags(tree: Path) -> str:
    return subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--help"], cwd=tree, capture_output=True,
                          text=True, env=_env(tree), check=False).stdout


def _env(tree: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(tree)}


def _supported(args: Sequence[str], help_text: str) -> tuple[list[str], list[str]]:
    """`args` without the flags `help_text` does not list (a flag's value goes with it)."""
    kept, dropped, skip_value = [], [], False
    for i, arg in enumerate(args):
        if skip_value:
            skip_value = False
            continue
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            if flag not in help_text:
                dropped.append(flag)
                skip_value = "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("--")
                continue
        kept.append(arg)
    return kept, dropped


def run_once(tree: Path, args: Sequence[str], out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.throughput", *args, "--out", str(out)]
    done = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise SystemExit(f"benchmark failed in {tree} ({' '.join(cmd)}):\n{tail}")
    return json.loads(out.read_text())


def _fmt(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}")


def table(rounds: list[tuple[dict[str, float | None], dict[str, float | None]]], rev: str) -> str:
    lines = [f"| figure | {' | '.join(f'round {i + 1}: new / {rev} (ratio)' for i in range(len(rounds)))} "
             f"| ratio range |", "| --- |" + " ---: |" * (len(rounds) + 1)]
    for label, _, _ in FIGURES:
        cells, ratios = [], []
        for new, old in rounds:
            n, o = new.get(label), old.get(label)
            ratio = n / o if n is not None and o else None
            if ratio is not None:
                ratios.append(ratio)
            cells.append(f"{_fmt(n)} / {_fmt(o)} ({_fmt(ratio)})")
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        lines.append(f"| {label} | {' | '.join(cells)} | {spread} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, passthrough = argv[:split], argv[split + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", required=True, help="the git revision to compare against")
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs (each pair in alternating order)")
    p.add_argument("--old-args", default="", help="more arguments for the old side only")
    p.add_argument("--out", type=Path, default=None, help="JSON with every run's figures and the table")
    args = p.parse_args(argv)
    bench_args = passthrough or list(DEFAULT_ARGS)

    with tempfile.TemporaryDirectory(prefix="gpo-against-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(old_tree), args.rev],
                       check=True, capture_output=True)
        try:
            old_args, dropped = _supported([*bench_args, *shlex.split(args.old_args)], _known_flags(old_tree))
            if dropped:
                print(f"{args.rev} lacks {', '.join(dropped)}: its side runs without them")
            sides = {"new": (ROOT, bench_args), "old": (old_tree, old_args)}
            rounds, raw = [], []
            for i in range(args.rounds):
                order = ("new", "old") if i % 2 == 0 else ("old", "new")
                got: dict[str, dict[str, Any]] = {}
                for side in order:
                    tree, side_args = sides[side]
                    got[side] = run_once(tree, side_args, Path(tmp) / f"{side}-{i}.json")
                    print(f"round {i + 1} {side}: {figures(got[side])}", flush=True)
                rounds.append((figures(got["new"]), figures(got["old"])))
                raw.append({"order": order, "new": rounds[-1][0], "old": rounds[-1][1]})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)],
                           check=False, capture_output=True)
    text = table(rounds, args.rev)
    print(f"\n`python -m benchmarks.against --rev {args.rev} --rounds {args.rounds}"
          f"{' -- ' + ' '.join(passthrough) if passthrough else ''}`\n")
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rev": args.rev, "args": bench_args, "old_args": old_args, "rounds": raw,
                                        "table": text}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
