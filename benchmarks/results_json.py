"""results.json at 1,000 tasks: what one rewrite costs with each serialiser, in one run.

    .venv/bin/python -m benchmarks.results_json                 # 1,000 tasks, about 2.4 MB
    .venv/bin/python -m benchmarks.results_json --tasks 3000 --steps 4

Compared on the same document (entries made by the controller's own `partial_task_result` from step records with
candidates, non-ASCII prompts with newlines):
- `pydantic`: the state writer's `ResultsDocument` (model_validate + model_dump_json, what a run does now);
- `hand-built, after a step`: the controller's serialiser before issue 25 (each task's entry kept serialised,
  re-serialised only when its task moved on, spliced into the file by hand), in its common case: one entry changed;
- `hand-built, every entry`: the same at its first write;
- `json.dumps`: the whole document, every time.
CPU time (process_time), the median of --repeat runs. The texts are checked byte for byte against json.dumps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from gpo_ray.controller.state_writer import ResultsDocument, partial_task_result
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import ScoredCandidate


def document(tasks: int, steps: int, candidates: int) -> dict[str, Any]:
    rng = random.Random(0)

    def prompt(i: int, j: int) -> str:
        return (f"Task {i}, variant {j}: think step by step — «check» each answer.\n"
                "Reply with the final answer only, on a line of its own.")

    def record(i: int, step: int) -> StepResult:
        cands = tuple(ScoredCandidate(prompt(i, 10 * step + c), round(rng.random(), 4), 12 + c) for c in range(candidates))
        return StepResult(step=step, edit_budget=max(1, 40 - 10 * step), prompt=cands[0].prompt if cands else "",
                          eval_score=round(rng.random(), 4), candidates=cands if step else (),
                          counts={"admitted": candidates, "duplicate": 1} if step else {})

    entries = {f"bbh/task_{i:04d}": partial_task_result([record(i, s) for s in range(steps + 1)])
               for i in range(tasks)}
    usage = {role: {"calls": 12345, "requests": 12400, "prompt_tokens": 9_876_543, "completion_tokens": 123_456,
                    "cache_hits": 17, "retries": 3, "errors": {"timeout": 2, "status_429": 1},
                    "by_model": {"m": 12400}} for role in ("optimizer", "task_model")}
    return {"status": "running", "run_dir": "/runs/bench", "sampling": {"temperature": 0.0, "seed": 0},
            "tasks": entries, "usage": usage,
            "timing": {"started_at": "2026-12-07T18:00:00Z", "updated_at": "2026-12-07T18:10:00Z",
                       "wall_time_s": 600.125}}


class HandBuilt:
    """The controller's `results_text` before issue 25, as it was (benchmarks only)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.task_entries = dict(doc["tasks"])
        self._entry_text: dict[str, tuple[dict[str, Any], str]] = {}

    def text(self) -> str:
        def value(v: Any, depth: int) -> str:
            return json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * depth)

        tasks = []
        for name, entry in self.task_entries.items():
            cached = self._entry_text.get(name)
            if cached is None or cached[0] is not entry:
                cached = self._entry_text[name] = (entry, value(entry, 2))
            tasks.append(f"    {json.dumps(name, ensure_ascii=False)}: {cached[1]}")
        doc = self.doc
        head = [f"  {json.dumps(k)}: {value(doc[k], 1)}" for k in ("status", "run_dir", "sampling")]
        tail = [f"  {json.dumps(k)}: {value(doc[k], 1)}" for k in ("usage", "timing")]
        body = "{\n" + ",\n".join(tasks) + "\n  }" if tasks else "{}"
        return "{\n" + ",\n".join([*head, f'  "tasks": {body}', *tail]) + "\n}"


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(1000 * (time.process_time() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2, help="completed steps per task")
    parser.add_argument("--candidates", type=int, default=4, help="scored candidates per step")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    doc = document(args.tasks, args.steps, args.candidates)
    reference = json.dumps(doc, indent=2, ensure_ascii=False)
    hand = HandBuilt(doc)
    some = next(iter(hand.task_entries))

    def hand_after_a_step() -> str:
        hand.task_entries[some] = dict(hand.task_entries[some])  # one task moved on: its entry is a new one
        return hand.text()

    def hand_every_entry() -> str:
        hand._entry_text.clear()
        return hand.text()

    def pydantic() -> str:
        return ResultsDocument.model_validate(doc).text()

    assert pydantic() == reference and hand_every_entry() == reference and hand_after_a_step() == reference
    rows = {"pydantic (ResultsDocument)": cpu_ms(pydantic, args.repeat),
            "hand-built, after a step": cpu_ms(hand_after_a_step, args.repeat),
            "hand-built, every entry": cpu_ms(hand_every_entry, args.repeat),
            "json.dumps": cpu_ms(lambda: json.dumps(doc, indent=2, ensure_ascii=False), args.repeat)}
    print(f"results.json: {args.tasks} tasks, {len(reference.encode()) / 1e6:.2f} MB; every text byte-identical "
          f"to json.dumps; CPU ms per rewrite (median of {args.repeat})")
    base = rows["pydantic (ResultsDocument)"]
    for name, ms in rows.items():
        print(f"  {name:28} {ms:8.2f} ms   {ms / base:5.2f} x pydantic")


if __name__ == "__main__":
    main()
