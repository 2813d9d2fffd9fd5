"""The workload: the 27 BIG-Bench-Hard tasks of the shared GPO data, else 27 synthetic tasks of the same shape;
the fake endpoint's config that answers them, and a run's config against that endpoint."""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.config import LLMRoleConfig, RunConfig, TaskSource
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Task
from gpo_ray.testing import FakeLLMConfig, answer_key_from_examples

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "gpo"
BBH_SPLITS = {"train": 48, "eval": 48, "test": 144}  # sizes like the paper's BBH splits
SKILLS = {"step by step": 0.3, "carefully": 0.2, "each option": 0.15}
PHRASES = ["Think step by step.", "Read each option carefully.", "Be concise.", "Check each option.",
           "Work carefully.", "Answer directly."]


def synthetic_task(folder: Path, *, seed: int) -> None:
    """Write one BBH-shaped task (addition questions, BBH split sizes) to `folder`; the same seed, the same task."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in {**BBH_SPLITS, "format": 3}.items():
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(n):
                a, b = rng.randint(2, 999), rng.randint(2, 999)
                # At least AnswerKeyIndex.PREFIX (40) characters: the fake endpoint finds longer questions by their
                # prefix, shorter ones by trying each in turn (at 1,000 tasks that was most of its CPU per request).
                question = f"Synthetic task {seed}: what is {a} + {b}? Answer with the number."
                f.write(json.dumps({"input": question, "target": str(a + b)}) + "\n")


@dataclass
class Workload:
    tasks: list[Task]
    task_names: list[str]
    data_dir: Path | None
    sources: list[TaskSource]
    source: str  # "shared BBH" or "synthetic BBH-shaped"

    def subset(self, n: int) -> Workload:
        return Workload(self.tasks[:n], self.task_names[:n], self.data_dir, self.sources, self.source)


def load_workload(n_tasks: int, *, data_dir: Path | None, scratch: Path) -> Workload:
    """The first `n_tasks` BBH tasks under `data_dir`; synthetic ones written under `scratch` for the rest (all of
    them when the shared data is absent, those beyond its 27 tasks when more are asked for)."""
    shared: list[Task] = []
    if data_dir is not None and (data_dir / "BIG-Bench-Hard").is_dir():
        shared = resolve_tasks(["bbh/*"], data_dir=data_dir, sources=[])[:n_tasks]
        if len(shared) == n_tasks:
            return Workload(shared, [t.name for t in shared], data_dir, [], f"shared BBH ({data_dir})")
    sources = []
    width = max(2, len(str(n_tasks - len(shared) - 1)))
    for i in range(n_tasks - len(shared)):
        folder = scratch / "data" / f"t{i:0{width}d}"
        synthetic_task(folder, seed=i)
        sources.append(TaskSource(name=f"bbh_shaped/t{i:0{width}d}", format="jsonl", path=folder, metric="numeric"))
    synthetic = resolve_tasks(["bbh_shaped/*"], data_dir=None, sources=sources)
    tasks = [*shared, *synthetic]
    if shared:
        source = f"{len(shared)} shared BBH ({data_dir}) + {len(synthetic)} synthetic BBH-shaped"
        return Workload(tasks, [t.name for t in tasks], data_dir, sources, source)
    return Workload(tasks, [t.name for t in tasks], None, sources, "synthetic BBH-shaped (shared data absent)")


def endpoint_config(workload: Workload, *, latency: float, slots: int, timeline: bool = True) -> FakeLLMConfig:
    """The scripted models of `gpo_ray.testing`, knowing the workload's answers, at a fixed latency and slots."""
    examples = [e for t in workload.tasks for e in (*t.train, *t.eval, *t.test)]
    return FakeLLMConfig(latency_s=latency, concurrency=slots, answer_key=answer_key_from_examples(examples),
                         skill_phrases=SKILLS, optimizer_phrases=PHRASES, base_accuracy=0.3, record_timeline=timeline)


def run_config(workload: Workload, base_url: str, root: Path, args: argparse.Namespace, *, evaluators: int,
               optimizer: dict[str, Any] | None = None) -> RunConfig:
    """A run of the workload against the endpoint at `base_url`, with the settings of `cli.RUN_OPTIONS`."""
    role = LLMRoleConfig(base_url=base_url, model="fake-llm", max_tokens=64, max_in_flight=args.max_in_flight,
                         timeout_s=60, adaptive_concurrency={
                             "enabled": getattr(args, "adaptive_concurrency", True)})
    opt = dict(epochs=args.epochs, batch_size=args.batch_size, candidates=args.candidates, seed=3,
               train_limit=args.train_limit, eval_limit=args.eval_limit, evaluate_test=False,
               initial_prompt="Answer the question.")
    opt.update(optimizer or {})
    return RunConfig(
        tasks=workload.task_names, data_dir=workload.data_dir, task_sources=workload.sources,
        task_model=role, optimizer_model=role.model_copy(update={"temperature": 1.0}), optimizer=opt,
        cluster={"num_refiners": args.refiners, "num_evaluators": evaluators,
                 "evaluator_max_in_flight": args.evaluator_max_in_flight,
                 "memory_shards": getattr(args, "memory_shards", None),
                 "warm_start": getattr(args, "warm_start", True)},
        run_dir=root / f"run-{time.monotonic_ns()}", cache=False,
    )
