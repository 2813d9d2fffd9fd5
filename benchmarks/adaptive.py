"""Adaptive evaluation (successive halving) against full evaluation of the same candidates: calls saved, choices.

    .venv/bin/python -m benchmarks.adaptive                   # 27 tasks: seconds, one core, no Ray
    .venv/bin/python -m benchmarks.adaptive --first-round 4 --eta 3 --out /tmp/a.json

In this process, with the scripted models of gpo_ray.testing (`ScriptedLLM`, no endpoint, no Ray): per task, one
GPO run scoring 8 candidates per step on the eval split with successive halving, and one with full evaluation.
Reported: scoring calls and task-model calls of both; in how many steps full evaluation of the adaptive step's very
candidates would choose another one (a counterfactual per step, `select_next` on the rescored candidates); the mean
best eval score of both.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.workload import Workload, endpoint_config
from gpo_ray.config import OptimizerSettings
from gpo_ray.core.evaluation import TaskModelParams, mean
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.selection import select_next
from gpo_ray.core.types import ScoredCandidate
from gpo_ray.tasks.types import Task
from gpo_ray.testing import FakeLLMConfig, ScriptedLLM

CANDIDATES = 8
SHARED_OPTIONS = ("--tasks", "--epochs", "--batch-size", "--train-limit", "--data-dir")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--first-round", type=int, default=8, help="adaptive evaluation: examples in the first round")
    p.add_argument("--eta", type=int, default=2, help="adaptive evaluation: keep 1/eta of the candidates per round")


async def _task(task: Task, settings: OptimizerSettings, full_settings: OptimizerSettings,
                config: FakeLLMConfig) -> dict[str, Any]:
    models = ScriptedLLM(config)
    services = InProcessServices(optimizer_llm=models, task_llm=models, embed=None, task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    # Counterfactual per step: full evaluation of the very candidates the adaptive step had.
    referee = ScriptedLLM(config)
    judge = InProcessServices(optimizer_llm=None, task_llm=referee, embed=None, task_params=TaskModelParams())
    eval_examples = task.eval[: settings.eval_limit] if settings.eval_limit else task.eval
    chosen_before = [result.initial_prompt]
    differs = 0
    for s in result.steps:
        if s.candidates:
            full = await judge.score(task, [c.prompt for c in s.candidates], eval_examples)
            rescored = [ScoredCandidate(c.prompt, mean(sc), c.edit_distance, len(sc))
                        for c, sc in zip(s.candidates, full, strict=True)]
            pick = select_next(rescored, chosen_before=chosen_before)
            differs += int(pick is not None and pick.prompt != s.prompt)
        chosen_before.append(s.prompt)
    full_models = ScriptedLLM(config)
    full_services = InProcessServices(optimizer_llm=full_models, task_llm=full_models, embed=None,
                                      task_params=TaskModelParams())
    full_result = await GPOTaskLoop(task, settings=full_settings, services=full_services, structured=False).run()
    return {
        "steps": len(result.steps),
        "steps_choice_differs": differs,
        "scoring_calls": sum(s.counts["scoring_calls"] for s in result.steps),
        "scoring_calls_full": sum(s.counts["scoring_calls_full"] for s in result.steps),
        "task_calls_adaptive_run": models.calls["task"],
        "task_calls_full_run": full_models.calls["task"],
        "best_eval_adaptive": result.best_eval_score,
        "best_eval_full": full_result.best_eval_score,
    }


def measure(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """The report's "adaptive" section. Neither an endpoint nor Ray: the scripted models run in this process."""
    config = endpoint_config(workload, latency=0.0, slots=64, timeline=False)
    base = dict(epochs=args.epochs, batch_size=args.batch_size, candidates=CANDIDATES, seed=3,
                train_limit=args.train_limit, evaluate_test=False, initial_prompt="Answer the question.",
                retrieval="recency", candidate_scoring="eval")
    full = OptimizerSettings(**base)
    adaptive = OptimizerSettings(**base, adaptive_evaluation={"enabled": True, "first_round": args.first_round,
                                                              "eta": args.eta})

    async def all_tasks() -> list[dict[str, Any]]:
        return [await _task(t, adaptive, full, config) for t in workload.tasks]

    per_task = asyncio.run(all_tasks())
    total = {k: sum(r[k] for r in per_task) for k in ("steps", "steps_choice_differs", "scoring_calls",
                                                       "scoring_calls_full", "task_calls_adaptive_run",
                                                       "task_calls_full_run")}
    return {
        "source": workload.source, "tasks": len(per_task), "first_round": args.first_round, "eta": args.eta,
        "candidates": CANDIDATES, **total,
        "scoring_calls_saved": 1 - total["scoring_calls"] / max(total["scoring_calls_full"], 1),
        "mean_best_eval_adaptive": mean([r["best_eval_adaptive"] for r in per_task]),
        "mean_best_eval_full": mean([r["best_eval_full"] for r in per_task]),
    }


def print_section(a: dict[str, Any]) -> None:
    print(f"\nadaptive evaluation ({a['tasks']} tasks, {a['candidates']} candidates, first round {a['first_round']}, "
          f"eta {a['eta']}): scoring calls {a['scoring_calls']} vs {a['scoring_calls_full']} full "
          f"({100 * a['scoring_calls_saved']:.0f}% saved); choice differs in {a['steps_choice_differs']} of "
          f"{a['steps']} steps; mean best eval {a['mean_best_eval_adaptive']:.3f} vs {a['mean_best_eval_full']:.3f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("adaptive", __doc__)
    cli.add_options(p, *SHARED_OPTIONS)
    add_arguments(p)
    cli.add_out(p, "adaptive")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def fill(report: dict[str, Any], workload: Workload, root: Path) -> None:
        report["adaptive"] = measure(workload, args)

    return cli.run(argv, args, fill, lambda report: print_section(report["adaptive"]), with_ray=False)


if __name__ == "__main__":
    raise SystemExit(main())
