"""CPU per scored example of each way a task can be scored (issue 24): the four built-in kinds, a Python metric, and
each built-in check, in one process.

    .venv/bin/python -m benchmarks.metric_cost                        # 5 rounds, about 0.2 s per metric per round
    .venv/bin/python -m benchmarks.metric_cost --rounds 7 --seconds 0.5 --out /tmp/metric_cost.json

What is timed is `core.evaluation.judge(metric, reply, example)`: what an evaluator actor runs on each reply once the
task model has answered (for a Python metric: the function's lookup and call and the check of what it returned; for
checks: the spec's scoring). It is timed with time.process_time (this process's CPU, not the wall clock, so other
jobs on the machine disturb it little) over many calls on a few replies, right and wrong, cycled. Each round
measures every metric once, in turn, and reports microseconds per scored example and the ratio to the built-in
exact_match measured in that same round; the table gives each figure's range over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.config import ChecksMetric, PythonMetric
from gpo_ray.core.evaluation import Metric, judge
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

BASELINE = "exact_match"


def last_word(example: dict, reply: str) -> tuple[float, str | None]:
    """The Python metric timed: the reply's last word against the answer, saying what was expected when wrong
    (tests/metric_functions.py: exact_number, a typical user metric)."""
    words = reply.replace(",", " ").split()
    said = words[-1].strip(".") if words else ""
    if said == example["answer"]:
        return 1.0, None
    return 0.0, f"the last word should be {example['answer']}, not {said or 'nothing'}"


@dataclass(frozen=True)
class Case:
    """One metric and the (reply, example) pairs it scores, right and wrong."""

    name: str
    metric: Metric
    pairs: tuple[tuple[str, Example], ...]


SUM = Example("What is 40 + 4?", ("44",), id="eval:0")
SUM_PAIRS = ((("Let's think step by step. 40 + 4 = 44. The answer is 44."), SUM),
             ("Let's think step by step. 40 plus 4 makes 45. The answer is 45.", SUM))
CHOICE = Example("Which way is north?\nOptions:\n(A) up\n(B) down\n(C) left", ("(A)",), id="eval:1")
LABEL = Example("Is the review positive? 'Great food.'", ("yes",), id="eval:2")
SUMMARY = Example("Summarise: the cat sat on the mat all day.", ("A cat sat on a mat all day long.",), id="eval:3")
TICKET_REF = json.dumps({"team": "billing", "priority": "high", "refund": True})
TICKET = Example("Ticket: I was charged twice, please refund.", (TICKET_REF,), id="eval:4")
TICKET_REPLIES = ('{"team": "billing", "priority": "high", "refund": true}',
                  'Here it is:\n```json\n{"team": "tech", "priority": "low", "refund": true}\n```',
                  "team: billing")
SCHEMA = {"type": "object", "required": ["team", "priority"],
          "properties": {"team": {"enum": ["billing", "tech", "sales"]}, "priority": {"type": "string"},
                         "refund": {"type": "boolean"}}}


def checks(*specs: dict[str, Any]) -> ChecksMetric:
    return ChecksMetric(kind="checks", checks=specs)


def cases() -> list[Case]:
    ticket_pairs = tuple((r, TICKET) for r in TICKET_REPLIES)
    return [
        Case(BASELINE, MetricKind.EXACT_MATCH, SUM_PAIRS),
        Case("multiple_choice", MetricKind.MULTIPLE_CHOICE,
             (("The answer is (A).", CHOICE), ("North is up, so B) down is wrong... answer: (B)", CHOICE))),
        Case("numeric", MetricKind.NUMERIC, SUM_PAIRS),
        Case("rouge_l", MetricKind.ROUGE_L,
             (("The cat sat on the mat for the whole day.", SUMMARY), ("A dog ran.", SUMMARY))),
        Case("python (last word, feedback)",
             PythonMetric(kind="python", function="benchmarks.metric_cost:last_word"), SUM_PAIRS),
        Case("check contains", checks({"check": "contains", "text": "answer is 44"}), SUM_PAIRS),
        Case("check regex", checks({"check": "regex", "pattern": r"= \d+\. The answer is \d+\.$"}), SUM_PAIRS),
        Case("check json", checks({"check": "json"}), ticket_pairs),
        Case("check json + schema", checks({"check": "json", "schema": SCHEMA}), ticket_pairs),
        Case("check json + fields", checks({"check": "json", "fields": ["team", "priority"]}), ticket_pairs),
        Case("check json + schema + fields",
             checks({"check": "json", "schema": SCHEMA, "fields": ["team", "priority", "refund"]}), ticket_pairs),
        Case("check one_of", checks({"check": "one_of", "labels": ["yes", "no"]}),
             (("Yes.", LABEL), ("Maybe", LABEL))),
        Case("check similarity", checks({"check": "similarity"}), SUM_PAIRS),
    ]


def cpu_per_call(score: Callable[[], object], calls: int, *, clock: Callable[[], float] = time.process_time
                 ) -> float:
    """CPU seconds per call of `score`, over `calls` calls."""
    start = clock()
    for _ in range(calls):
        score()
    return (clock() - start) / calls


def scorer(case: Case) -> Callable[[], object]:
    """One call: the next (reply, example) pair of the case, scored as an evaluator scores it."""
    pairs, i = case.pairs, [0]

    def score() -> object:
        reply, example = pairs[i[0] % len(pairs)]
        i[0] += 1
        return judge(case.metric, reply, example)

    return score


def calls_for(score: Callable[[], object], seconds: float) -> int:
    """How many calls take about `seconds` of CPU (after a warm-up: imports, compiled patterns)."""
    for _ in range(20):
        score()
    probe = 20
    while (per_call := cpu_per_call(score, probe)) * probe < 0.02:
        probe *= 4
    return max(20, int(seconds / max(per_call, 1e-9)))


def summarize(rounds: Sequence[dict[str, float]], *, baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per metric, from each round's seconds per call: the µs and the ratio to `baseline` of the same round, each as
    min, median, max over the rounds. Metrics in the order of the first round."""
    rows = []
    for name in rounds[0]:
        us = [r[name] * 1e6 for r in rounds]
        ratio = [r[name] / r[baseline] for r in rounds]
        rows.append({"metric": name, "us_min": min(us), "us_median": statistics.median(us), "us_max": max(us),
                     "ratio_min": min(ratio), "ratio_median": statistics.median(ratio), "ratio_max": max(ratio)})
    return rows


def _figure(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def markdown(rows: Sequence[dict[str, Any]], *, rounds: int, baseline: str = BASELINE) -> str:
    """The summary as a markdown table: median and range of µs per scored example, and of the ratio to `baseline`."""
    head = f"| metric | CPU µs per scored example, median (range over {rounds} rounds) | × {baseline}, median (range) |"
    lines = [head, "| --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['metric']} | {_figure(r['us_median'])} ({_figure(r['us_min'])} to {_figure(r['us_max'])})"
                     f" | {r['ratio_median']:.2f} ({r['ratio_min']:.2f} to {r['ratio_max']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metric_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.2, help="CPU seconds per metric per round (about)")
    parser.add_argument("--out", type=Path, help="also write the rounds and the summary as JSON here")
    args = parser.parse_args(argv)

    measured = [(case.name, scorer(case)) for case in cases()]
    calls = {name: calls_for(score, args.seconds) for name, score in measured}
    rounds = []
    for _ in range(args.rounds):
        rounds.append({name: cpu_per_call(score, calls[name]) for name, score in measured})
    rows = summarize(rounds)
    sys.stdout.write(markdown(rows, rounds=args.rounds))
    if args.out:
        args.out.write_text(json.dumps({"calls_per_round": calls, "rounds": rounds, "summary": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
