"""One GPO loop for one task, written once against a small services interface.

The sequential reference optimizer plugs in-process services into it; the distributed controller
plugs actor-backed services (memory, refiners, evaluator pool) into the very same loop, so the two
agree by construction and differ only in where the work runs.

Per step t = 1..T (t counts completed steps of the trajectory):
  0-1. the run's direction and momentum objects (core/design/) make what the meta-prompt shows of where to go and
     of the past: e.g. `direction: feedback` asks the optimizer why the current prompt got the step's wrong examples
     wrong, `momentum` prompts/retrieve retrieves past prompts (relevance / recency / importance, k), summarize
     merges the carried item with the current one,
  2. budget N = schedule.budget(t), the one shared schedule,
  3. generate candidates with the optimizer LLM (meta-prompt with the retrieved prompts and N),
  4. score every candidate on the step's training batch (default) or on the eval split (the paper; optionally
     by successive halving, core/adaptive.py) and move to the best one not chosen before,
  5. score that prompt on the eval split (unless it just was); record the step (checkpoint) before the next begins.
The answer is the trajectory prompt with the best eval score (ties: the earliest).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.adaptive import eval_order, successive_halving
from gpo_ray.core.batches import batch_for_step, stable_seed
from gpo_ray.core.design import DEFAULT_REGISTRY, DesignRegistry, Retrieval, StepView
from gpo_ray.core.design.budget import EditBudget
from gpo_ray.core.design.step import TracedBatch
from gpo_ray.core.design.style import MetaPromptStyle
from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.core.evaluation import MetricFailure, mean
from gpo_ray.core.extraction import prompt_key
from gpo_ray.core.generation import (
    GenerationRequest,
    GenerationResult,
    OptimizerTextRequest,
)
from gpo_ray.core.meta_prompt import DEFAULT_TEMPLATE, MetaPromptTemplate
from gpo_ray.core.paper_draws import official_format_indices, official_train_batch
from gpo_ray.core.results import GradedExample, StepResult, TaskResult, lowest_scored
from gpo_ray.core.schedule import EditBudgetSchedule, total_steps
from gpo_ray.core.selection import (
    paper_new_order,
    paper_ranking,
    paper_select,
    select_best,
    select_next,
)
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry
from gpo_ray.core.variants import extract_reply
from gpo_ray.errors import ConfigError, MetricErrorsExceeded
from gpo_ray.tasks.types import Example, Task
from gpo_ray.vocabulary import MetricKind, PromptPlacement, RunStatus


class TaskServices(Protocol):
    """What a GPO loop needs from the outside world."""

    async def retrieve(
        self, task: Task, trajectory: Sequence[TrajectoryEntry], *, strategy: str, k: int, order: str
    ) -> list[TrajectoryEntry]: ...

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def score(self, task: Task, prompts: Sequence[str], examples: Sequence[Example]
                    ) -> list[list[float | MetricFailure]]:
        """Per prompt, per example scores in [0, 1], or the metric's failure on the example."""
        ...

    async def score_with_predictions(
        self, task: Task, prompt: str, examples: Sequence[Example]
    ) -> list[tuple[float | MetricFailure, str, str | None]]:
        """Per example (score, the model's answer as shown, the metric's feedback): direction feedback's wrong
        examples."""
        ...

    async def ask_optimizer(self, request: OptimizerTextRequest) -> str:
        """The optimizer's raw reply to one feedback or summarize request."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embedding vectors (relevance selection of past feedback)."""
        ...

    async def step_done(self, task: Task, record: StepResult) -> None:
        """Persist a completed step (step 0 is the initial prompt) before the next one starts."""
        ...

    def should_stop(self) -> bool:
        """True when a global budget is spent: the loop ends after its last completed step."""
        ...


def template_for(settings: OptimizerSettings) -> MetaPromptTemplate:
    """The meta-prompt template with the run's overrides (optimizer.meta_prompt)."""
    return replace(DEFAULT_TEMPLATE, **settings.meta_prompt)


def settings_for_task(task: Task, settings: OptimizerSettings, *,
                      registry: DesignRegistry = DEFAULT_REGISTRY) -> OptimizerSettings:
    """The run's settings as one task sees them: with its own prompt placement where its task source sets one."""
    if task.placement is None or PromptPlacement(task.placement) is PromptPlacement(settings.placement):
        return settings
    problem = registry.style(settings.meta_prompt_style).placement_problem(PromptPlacement(task.placement))
    if problem is not None:
        raise ConfigError(f"task '{task.name}': placement {PromptPlacement(task.placement).value}, but {problem}")
    return settings.model_copy(update={"placement": PromptPlacement(task.placement)})


def train_examples(task: Task, settings: OptimizerSettings) -> tuple[Example, ...]:
    return tuple(task.train[: settings.train_limit] if settings.train_limit else task.train)


def format_examples_for(task: Task, settings: OptimizerSettings) -> tuple[Example, ...]:
    """The format exemplars the meta-prompt shows: the first `format_examples`, or (`format_example_sampling:
    seeded`, the paper's format_data_num) that many drawn without replacement by a seeded RNG, in file order, or
    (`paper`) the official code's own draw for this task run alone (core/paper_draws.py), over the full splits."""
    pool = task.format_examples
    n = min(settings.format_examples, len(pool))
    if settings.format_example_sampling == "first":
        return tuple(pool[:n])
    if settings.format_example_sampling == "paper":
        sizes = (len(task.train), len(task.eval), len(task.test), len(pool))
        (indices,) = official_format_indices([sizes], n, seed=settings.seed)
        return tuple(pool[i] for i in indices)
    rng = random.Random(stable_seed(settings.seed, task.name, "format_examples"))
    return tuple(pool[i] for i in sorted(rng.sample(range(len(pool)), n)))


def schedule_for(task: Task, settings: OptimizerSettings) -> EditBudgetSchedule:
    """The one place a task's schedule is made: T from the training split, the decay from the config."""
    steps = total_steps(len(train_examples(task, settings)), batch_size=settings.batch_size, epochs=settings.epochs)
    return EditBudget.of(settings).schedule(total_steps=steps)


@dataclass
class LoopStep:
    """The StepContext (core/design/step.py) the design-space objects see of one step of a GPOTaskLoop."""

    loop: GPOTaskLoop
    t: int
    trajectory: Sequence[TrajectoryEntry]
    records: Sequence[StepResult]
    traced: TracedBatch | None
    tried: frozenset[str] = frozenset()  # what a rival method's candidates must not repeat

    @property
    def task(self) -> Task:
        return self.loop.task

    # What a rival method (core/design/method.py: MethodContext) sees besides.
    @property
    def settings(self) -> OptimizerSettings:
        return self.loop.settings

    @property
    def structured(self) -> bool:
        return self.loop.structured

    @property
    def eval_examples(self) -> Sequence[Example]:
        return self.loop.eval_examples

    @property
    def train_examples(self) -> Sequence[Example]:
        return self.loop.train_examples

    async def sample(self, purpose: str, texts: Sequence[str], *, key: str, structured: bool = False) -> list[str]:
        return await self.loop.sample(self.t, purpose, texts, key=key, structured=structured)

    async def score(self, prompts: Sequence[str], examples: Sequence[Example]) -> list[list[float]]:
        return await self.loop._score(prompts, examples)

    async def eval_score(self, prompt: str) -> float:
        return await self.loop._eval_score(prompt)

    @property
    def style(self) -> MetaPromptStyle:
        return self.loop.design.style

    @property
    def template(self) -> MetaPromptTemplate:
        return self.loop.template

    @property
    def retrieval(self) -> Retrieval:
        return self.loop.design.retrieval

    @property
    def carried(self) -> StepResult | None:
        return self.records[-1] if self.records and self.records[-1].step > 0 else None

    async def ask(self, purpose: str, text: str) -> str:
        return await self.loop.ask(self.t, purpose, text)

    async def retrieve(self, retrieval: Retrieval) -> list[TrajectoryEntry]:
        return await self.loop.services.retrieve(self.task, self.trajectory, strategy=retrieval.strategy,
                                                 k=retrieval.k, order=retrieval.order)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.loop.services.embed(texts)

    async def graded(self, prompt: str, examples: Sequence[Example]) -> list[tuple[float, str, str | None]]:
        return await self.loop.graded(prompt, examples)

    def train_batch(self) -> Sequence[Example]:
        s = self.loop.settings
        return batch_for_step(self.loop.train_examples, self.t, batch_size=s.batch_size, seed=s.seed)

    def log(self, event: str, **fields: Any) -> None:
        self.loop.log.info(event, step=self.t, **fields)


class GPOTaskLoop:
    def __init__(
        self,
        task: Task,
        *,
        settings: OptimizerSettings,
        services: TaskServices,
        structured: bool,
        optimizer_temperature: float = 1.0,
        optimizer_max_tokens: int | None = None,
        max_metric_errors: int | None = None,
        registry: DesignRegistry = DEFAULT_REGISTRY,
    ) -> None:
        self.task = task
        # Examples the metric could not score: this many are scored 0 and counted, one more stops the run (None: never).
        self.max_metric_errors = max_metric_errors
        self._metric_errors = 0  # since this loop started (a resume counts afresh)
        self._metric_errors_in_step = 0
        self._step_now: int | None = 0  # the step being run: metric errors are logged with it
        self.settings = settings = settings_for_task(task, settings, registry=registry)
        self.design = registry.design_for(settings)  # the objects that answer for the run's design-space choices
        self.services = services
        self.structured = structured
        self.optimizer_temperature = optimizer_temperature
        self.optimizer_max_tokens = optimizer_max_tokens
        self.schedule = schedule_for(task, settings)
        self.template = template_for(settings)
        self.train_examples = train_examples(task, settings)
        self.eval_examples = task.eval[: settings.eval_limit] if settings.eval_limit else task.eval
        self.test_examples = task.test[: settings.test_limit] if settings.test_limit else task.test
        self.format_examples = format_examples_for(task, settings)
        self._earlier_scores: dict[str, float] = {}  # repeated_candidates keep_score: prompt_key -> eval score
        # selection paper (the official optimize.py state): every prompt generated at an earlier step (its md5 set)
        # and the latest eval score of each prompt scored (instruction_score_dict), by exact text.
        self._paper_generated: set[str] = set()
        self._paper_scores: dict[str, float] = {}
        self.log = structlog.get_logger().bind(task=task.name)

    def _note_candidates(self, record: StepResult, tried: set[str]) -> None:
        """A step's candidates are not proposed again (`drop`), or come back with their eval score (`keep_score`)."""
        if self.settings.selection == "paper":
            if record.step == 0:
                self._paper_scores[record.prompt] = record.eval_score
            for c in record.candidates:
                self._paper_generated.add(c.prompt)
                self._paper_scores[c.prompt] = c.score
            return
        if self.settings.repeated_candidates != "keep_score":
            tried.update(c.prompt for c in record.candidates)
            return
        for c in record.candidates:
            if c.examples is None or c.examples == len(self.eval_examples):
                self._earlier_scores.setdefault(prompt_key(c.prompt), c.score)

    def _settle(self, values: Sequence[float | MetricFailure]) -> list[float]:
        """Scores with each metric failure scored 0, logged and counted; past max_metric_errors the run stops."""
        scores = []
        for value in values:
            if isinstance(value, MetricFailure):
                self._metric_errors += 1
                self._metric_errors_in_step += 1
                self.log.warning("metric_error", step=self._step_now, metric=value.metric, example=value.example_id,
                                 error=value.error, metric_errors=self._metric_errors)
                if self.max_metric_errors is not None and self._metric_errors > self.max_metric_errors:
                    raise MetricErrorsExceeded(
                        f"metric {value.metric} of task {self.task.name} failed on {self._metric_errors} examples "
                        f"(more than budget.max_metric_errors {self.max_metric_errors}), the last on example "
                        f"{value.example_id or '?'}: {value.error}")
                value = value.score
            scores.append(float(value))
        return scores

    async def _score(self, prompts: Sequence[str], examples: Sequence[Example]) -> list[list[float]]:
        return [self._settle(values) for values in await self.services.score(self.task, prompts, examples)]

    async def graded(self, prompt: str, examples: Sequence[Example]) -> list[tuple[float, str, str | None]]:
        """Per example (score, the reply as shown, the metric's feedback), metric failures settled as scores are."""
        graded = await self.services.score_with_predictions(self.task, prompt, examples)
        scores = self._settle([g[0] for g in graded])
        return [(sc, *g[1:]) for sc, g in zip(scores, graded, strict=True)]

    def _with_metric_errors(self, record: StepResult) -> StepResult:
        """The step's record with the metric errors counted while it ran (`metric_error`), when there were any."""
        errors, self._metric_errors_in_step = self._metric_errors_in_step, 0
        return replace(record, counts={**record.counts, "metric_error": errors}) if errors else record

    async def _eval_score(self, prompt: str) -> float:
        (scores,) = await self._score([prompt], self.eval_examples)
        return mean(scores)

    @property
    def _traces_test(self) -> bool:
        return self.settings.trace_scores and self.settings.evaluate_test and bool(self.test_examples)

    async def _trace_test_score(self, prompt: str) -> float | None:
        """trace_scores: a prompt's test score, as the official loop logs each step's prompt (test_log)."""
        if not self._traces_test:
            return None
        (scores,) = await self._score([prompt], self.test_examples)
        return mean(scores)

    async def _trace_test(self, prompt: str, kept: dict, counts: dict[str, int]) -> None:
        """trace_scores: the step's prompt on the test split, into the step record's fields and counts."""
        test_score = await self._trace_test_score(prompt)
        if test_score is not None:
            kept["test_score"] = test_score
            counts["trace_scoring_calls"] = counts.get("trace_scoring_calls", 0) + len(self.test_examples)

    async def _trace_train_score(self, t: int, prompt: str) -> tuple[float | None, TracedBatch | None]:
        """trace_scores: the current prompt on the step's training batch as the official loop slices it (train_log):
        its mean score, and the batch with its graded replies. With direction feedback those replies are what the
        feedback is asked from, as optimize.py computes its feedback from this same batch's results."""
        if not self.settings.trace_scores:
            return None, None
        batch = official_train_batch(self.train_examples, t, batch_size=self.settings.batch_size)
        if not batch:
            return None, None
        if self.design.direction.reads_replies:
            graded = await self.graded(prompt, batch)
            scores = [g[0] for g in graded]
        else:
            (scores,) = await self._score([prompt], batch)
            graded = None
        return mean(scores), TracedBatch(examples=list(batch), graded=graded)

    async def run(self, *, completed: Sequence[StepResult] = ()) -> TaskResult:
        """Run (or continue, given the completed steps of an interrupted run) to the end."""
        s = self.settings
        records = sorted(completed, key=lambda r: r.step)
        if not records:
            initial = StepResult(
                step=0, edit_budget=0, prompt=s.initial_prompt, eval_score=await self._eval_score(s.initial_prompt),
                test_score=await self._trace_test_score(s.initial_prompt),
            )
            initial = self._with_metric_errors(initial)
            await self.services.step_done(self.task, initial)
            records = [initial]
        trajectory = [TrajectoryEntry(r.prompt, r.eval_score, r.step) for r in records]
        tried = {r.prompt for r in records}
        for r in records:
            self._note_candidates(r, tried)
        status = RunStatus.COMPLETED
        for t in range(len(records), self.schedule.total_steps + 1):
            if self.services.should_stop():
                status = RunStatus.BUDGET_EXHAUSTED
                self.log.warning("budget_exhausted", step=t)
                break
            self._step_now = t
            record = self._with_metric_errors(await self._step(t, trajectory, tried, records))
            await self.services.step_done(self.task, record)
            records.append(record)
            trajectory.append(TrajectoryEntry(record.prompt, record.eval_score, t))
            tried.add(record.prompt)
            self._note_candidates(record, tried)
        return await self._finish(records, trajectory, status)

    async def ask(self, t: int, purpose: str, text: str) -> str:
        """One optimizer call besides the candidates at step t, its reply extracted."""
        raw = await self.services.ask_optimizer(OptimizerTextRequest(
            task=self.task.name, step=t, purpose=purpose, text=text, seed=self.settings.seed,
            max_tokens=self.optimizer_max_tokens,
        ))
        return extract_reply(raw)

    async def sample(self, t: int, purpose: str, texts: Sequence[str], *, key: str, structured: bool) -> list[str]:
        """A rival method's optimizer samples at step t, concurrently: one per text, each its own seed, raw."""
        return list(await asyncio.gather(*(
            self.services.ask_optimizer(OptimizerTextRequest(
                task=self.task.name, step=t, purpose=purpose, text=text, seed=self.settings.seed,
                temperature=self.optimizer_temperature, max_tokens=self.optimizer_max_tokens,
                sample_key=f"{key}:{i}", structured=structured))
            for i, text in enumerate(texts))))

    async def _method_step(self, t: int, trajectory: list[TrajectoryEntry], tried: set[str],
                           records: Sequence[StepResult]) -> StepResult:
        """A rival method's step (core/design/method.py), recorded as GPO's are (no edit budget: 0)."""
        method = self.design.method
        assert method is not None
        done = await method.step(LoopStep(self, t, trajectory, records, None, frozenset(tried)))
        return StepResult(step=t, edit_budget=0, prompt=done.prompt, eval_score=done.eval_score,
                          candidates=done.candidates, counts=done.counts, **done.kept)

    async def _direction_and_momentum(
        self, t: int, trajectory: list[TrajectoryEntry], records: Sequence[StepResult], *,
        traced: TracedBatch | None = None,
    ) -> tuple[dict, dict, dict[str, int]]:
        """What the meta-prompt shows of the direction and the past (GenerationRequest fields), what the step record
        keeps of them (StepResult fields), and the extra calls made: the direction's, then the momentum's (which
        shows past feedback in place of the direction's where it keeps feedback)."""
        ctx = LoopStep(self, t, trajectory, records, traced)
        feedback, direction = await self.design.direction.step(ctx)
        momentum: StepView = await self.design.momentum.step(ctx, feedback=feedback)
        shown = {"retrieved": (), **direction.shown, **momentum.shown}
        return shown, {**direction.kept, **momentum.kept}, {**direction.counts, **momentum.counts}

    async def _step(
        self, t: int, trajectory: list[TrajectoryEntry], tried: set[str], records: Sequence[StepResult] = ()
    ) -> StepResult:
        if self.design.method is not None:
            return await self._method_step(t, trajectory, tried, records)
        s = self.settings
        log = self.log.bind(step=t)
        current = trajectory[-1].prompt
        budget = self.schedule.budget(t)
        train_score, traced = await self._trace_train_score(t, current)  # optimize.py logs it before generating
        shown, kept, extra_counts = await self._direction_and_momentum(t, trajectory, records, traced=traced)
        if traced is not None:
            kept["train_score"] = train_score
            extra_counts["trace_scoring_calls"] = len(traced.examples)
        paper = s.selection == "paper"
        current_score = trajectory[-1].score
        if paper:  # optimize.py shows instruction_score_dict's score, not the one the step was recorded with
            current_score = self._paper_scores.get(current, current_score)
        generated = await self.services.generate(
            GenerationRequest(
                task=self.task.name,
                step=t,
                current_prompt=current,
                format_examples=self.format_examples,
                edit_budget=budget,
                n=s.candidates,
                tried=() if paper else tuple(sorted(tried)),
                placement=s.placement,
                structured=self.structured,
                enforcement=s.edit_enforcement,
                max_rerequests=s.max_rerequests,
                seed=s.seed,
                temperature=self.optimizer_temperature,
                max_tokens=self.optimizer_max_tokens,
                template=self.template,
                style=self.design.style.name,
                current_score=current_score,
                update=self.design.update.name,
                budget_in_prompt=self.design.budget.in_prompt,
                extraction=s.candidate_extraction,
                **shown,
            )
        )
        if paper:
            return await self._paper_step(t, current, budget, generated, trajectory, kept, extra_counts)
        reused: list[ScoredCandidate] = []
        if s.candidate_scoring == "eval":
            fresh = list(generated.candidates)
            if s.repeated_candidates == "keep_score":
                on_trajectory = {prompt_key(e.prompt) for e in trajectory}
                known = [p for p in fresh if prompt_key(p) in self._earlier_scores and prompt_key(p) not in on_trajectory]
                fresh = [p for p in fresh if p not in known]
                reused = [
                    ScoredCandidate(prompt=p, score=self._earlier_scores[prompt_key(p)],
                                    edit_distance=word_edit_distance(current, p), examples=len(self.eval_examples))
                    for p in known
                ]
            scored, fully_scored, calls, full_calls = await self._score_on_eval(t, current, fresh, trajectory)
            scored, fully_scored = scored + reused, fully_scored + reused
        else:
            batch = batch_for_step(self.train_examples, t, batch_size=s.batch_size, seed=s.seed)
            scored = []
            if generated.candidates:
                per_prompt = await self._score(generated.candidates, batch)
                scored = [
                    ScoredCandidate(prompt=p, score=mean(sc), edit_distance=word_edit_distance(current, p),
                                    examples=len(sc))
                    for p, sc in zip(generated.candidates, per_prompt, strict=True)
                ]
            fully_scored = scored
            calls = full_calls = len(generated.candidates) * len(batch)
        for i, c in enumerate(scored):
            log.info("candidate_scored", candidate=i, score=c.score, examples=c.examples,
                     edit_distance=c.edit_distance, over_budget=c.edit_distance > budget)
        counts = {**generated.counts, "scoring_calls": calls, "scoring_calls_full": full_calls, **extra_counts}
        if reused:
            counts["reused_score"] = len(reused)
        chosen = select_next(fully_scored, chosen_before=[e.prompt for e in trajectory])
        if chosen is None:
            # No usable candidate this step: stay on the current prompt (recorded, so resume is exact).
            log.warning("no_candidate", counts=counts)
            await self._trace_test(current, kept, counts)
            return StepResult(
                step=t, edit_budget=budget, prompt=current, eval_score=trajectory[-1].score,
                candidates=tuple(scored), counts=counts, **kept,
            )
        # Scored on the eval split already (candidate_scoring: eval), or now on it, once, for the trajectory.
        eval_score = chosen.score if s.candidate_scoring == "eval" else await self._eval_score(chosen.prompt)
        log.info("step_done", edit_budget=budget, candidates=len(scored), chosen_score=chosen.score,
                 eval_score=eval_score)
        await self._trace_test(chosen.prompt, kept, counts)
        return StepResult(
            step=t, edit_budget=budget, prompt=chosen.prompt, eval_score=eval_score,
            candidates=tuple(scored), counts=counts, **kept,
        )

    async def _paper_step(
        self, t: int, current: str, budget: int, generated: GenerationResult, trajectory: list[TrajectoryEntry],
        kept: dict, extra_counts: dict[str, int],
    ) -> StepResult:
        """selection paper: optimize.py's step after generation. A candidate generated at an earlier step competes
        with its latest eval score; the others (the initial prompt too, until it was generated once) are scored on
        the eval split; the ranking and the rule are core/selection.py's paper_ranking and paper_select."""
        s = self.settings
        repeated = [p for p in generated.candidates if p in self._paper_generated]
        new = paper_new_order([p for p in generated.candidates if p not in self._paper_generated],
                              order=s.new_candidate_order, seed=s.seed, task=self.task.name, step=t)
        reused = [ScoredCandidate(prompt=p, score=self._paper_scores[p], edit_distance=word_edit_distance(current, p),
                                  examples=len(self.eval_examples)) for p in repeated]
        scored: list[ScoredCandidate] = []
        if new:
            per_prompt = await self._score(new, self.eval_examples)
            scored = [ScoredCandidate(prompt=p, score=mean(sc), edit_distance=word_edit_distance(current, p),
                                      examples=len(sc)) for p, sc in zip(new, per_prompt, strict=True)]
        ranking = paper_ranking(current, [(c.prompt, c.score) for c in reused], [(c.prompt, c.score) for c in scored])
        prompt, score = paper_select(ranking, chosen_before=[e.prompt for e in trajectory if e.step >= 1])
        counts = {**generated.counts, "scoring_calls": len(new) * len(self.eval_examples),
                  "scoring_calls_full": len(new) * len(self.eval_examples), **extra_counts}
        if reused:
            counts["reused_score"] = len(reused)
        self.log.info("step_done", step=t, edit_budget=budget, candidates=len(scored) + len(reused),
                      chosen_score=score, stayed=prompt == current)
        await self._trace_test(prompt, kept, counts)
        return StepResult(step=t, edit_budget=budget, prompt=prompt, eval_score=score,
                          candidates=tuple(scored + reused), counts=counts, **kept)

    async def _score_on_eval(
        self, t: int, current: str, prompts: Sequence[str], trajectory: list[TrajectoryEntry]
    ) -> tuple[list[ScoredCandidate], list[ScoredCandidate], int, int]:
        """Score candidates on the eval split: all of it (the paper), or by successive halving (adaptive).

        Returns every candidate's score (over the examples it got), the fully scored ones (eligible to be chosen),
        the task-model calls made, and what full evaluation would have made."""
        a = self.settings.adaptive_evaluation
        examples = self.eval_examples
        excluded = {prompt_key(e.prompt) for e in trajectory}
        eligible = [p for p in prompts if prompt_key(p) not in excluded]
        distances = [word_edit_distance(current, p) for p in eligible]
        order = eval_order(len(examples), seed=self.settings.seed, step=t)
        ordered = [examples[i] for i in order]

        async def score_range(which: Sequence[int], start: int, stop: int) -> list[list[float]]:
            return await self._score([eligible[i] for i in which], ordered[start:stop])

        outcome = await successive_halving(
            len(eligible), len(examples), score_range,
            first_round=a.first_round if a.enabled else max(1, len(examples)), eta=a.eta,
            tiebreak=[(d, p) for d, p in zip(distances, eligible, strict=True)],
        )
        full = set(outcome.fully_scored(len(examples)))
        scored: list[ScoredCandidate] = []
        for i, (p, d) in enumerate(zip(eligible, distances, strict=True)):
            got = outcome.per_example[i]
            if i in full:  # the example order of a plain eval score, so equal prompts score exactly equal
                by_position = dict(zip(order, got, strict=True))
                got = [by_position[k] for k in range(len(examples))]
            scored.append(ScoredCandidate(prompt=p, score=mean(got), edit_distance=d, examples=len(got)))
        if a.enabled:
            self.log.info("adaptive_evaluation", step=t, rounds=outcome.rounds, calls=outcome.calls,
                          calls_saved=outcome.calls_saved)
        return scored, [scored[i] for i in sorted(full)], outcome.calls, outcome.full_calls

    async def _finish(self, records: list[StepResult], trajectory: list[TrajectoryEntry], status: str) -> TaskResult:
        self._step_now = None  # the test split's scoring, after the last step
        best = select_best(trajectory)
        initial = trajectory[0]
        initial_test = best_test = None
        lowest: tuple[GradedExample, ...] = ()
        by_step = {r.step: r for r in records}
        traced = (by_step[0].test_score, by_step[best.step].test_score) if best.step in by_step and 0 in by_step else None
        if self._traces_test and traced is not None and None not in traced:
            # trace_scores scored every trajectory prompt on the test split already.
            initial_test, best_test = traced
        elif self.settings.evaluate_test and self.test_examples and not isinstance(self.task.metric, MetricKind):
            # A metric of the user's own says why a reply fell short: the best prompt's replies are kept graded.
            if best.prompt == initial.prompt:
                graded = await self.graded(best.prompt, self.test_examples)
                best_test = initial_test = mean([g[0] for g in graded])
            else:
                graded, initial_scores = await asyncio.gather(self.graded(best.prompt, self.test_examples),
                                                              self._score([initial.prompt], self.test_examples))
                best_test, initial_test = mean([g[0] for g in graded]), mean(initial_scores[0])
            lowest = lowest_scored(self.test_examples, graded)
        elif self.settings.evaluate_test and self.test_examples:
            prompts = [initial.prompt] if best.prompt == initial.prompt else [initial.prompt, best.prompt]
            scores = await self._score(prompts, self.test_examples)
            initial_test = mean(scores[0])
            best_test = mean(scores[-1])
        return TaskResult(
            task=self.task.name,
            initial_prompt=initial.prompt,
            initial_eval_score=initial.score,
            initial_test_score=initial_test,
            best_prompt=best.prompt,
            best_eval_score=best.score,
            best_test_score=best_test,
            best_step=best.step,
            steps=tuple(records[1:]),
            status=status,
            lowest_test_examples=lowest,
        )
