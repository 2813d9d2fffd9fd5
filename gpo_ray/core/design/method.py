"""The rival optimizers (optimizer.method ape | apo | opro) as step objects on GPO's loop.

A rival method needs steps GPO's design space lacks (APE's resampling, APO's beam with bandit selection, OPRO's
top-20 score-sorted trajectory), so it is one more object beside the axes: given a step's context (the loop's
LoopStep: the trajectory, the records, the splits, and calls through the run's services - the refiner and evaluator
pools, the cache and the run-wide limits) it proposes, scores and selects, and hands back what the step moves to.
The loop records it, checkpoints it, and ends the run as for GPO (the best trajectory prompt by eval score, scored
with the initial one on the test split). `planned` counts what a run of it makes, under the names its steps count
(`optimizer_calls`, `scoring_calls`), so `plan` equals a run. Method pe2 is no object: it is a point of the design
space (config/schema.py). Meta-prompts: core/rival_text.py, with their sources.

Departures from the methods' code, the same for all of them: every candidate-producing request asks one sample (a
`n=k` API call is k calls, each with its own seed); the optimizer's sampling temperature is the run's; a reply without
the method's own markers is read by gpo-ray's extraction (JSON schema output, <START>/<END>); candidates already
tried for the task are not scored again; a step's prompt gets an eval-split score (the loop's trajectory), and the
run's answer is the trajectory prompt with the best one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.batches import stable_seed
from gpo_ray.core.design.step import StepContext
from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.core.evaluation import mean
from gpo_ray.core.extraction import CandidateFilter, extract_candidate
from gpo_ray.core.rival_text import (
    apo_edit_request,
    apo_error_string,
    apo_gradient_request,
    ape_forward_request,
    opro_extract,
    opro_meta_prompt,
    parse_tagged_text,
    resample_request,
)
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import Purpose

CANDIDATES = Purpose.CANDIDATES.value
FEEDBACK = Purpose.FEEDBACK.value


class MethodContext(StepContext, Protocol):
    """A step as a rival method sees it: the StepContext, and the calls it makes itself."""

    settings: OptimizerSettings
    structured: bool
    tried: frozenset[str]
    eval_examples: Sequence[Example]
    train_examples: Sequence[Example]

    async def sample(self, purpose: str, texts: Sequence[str], *, key: str, structured: bool = False) -> list[str]:
        """One optimizer sample per text (the run's temperature, each its own seed from `key` and its index), raw;
        `structured`: asked for gpo-ray's candidate JSON where the endpoint supports it."""
        ...

    async def score(self, prompts: Sequence[str], examples: Sequence[Example]) -> list[list[float]]: ...

    async def eval_score(self, prompt: str) -> float: ...


@dataclass
class MethodStep:
    """What a method's step moved to: the prompt, its eval score, the candidates scored (score over `examples`),
    the calls made (`optimizer_calls`, `scoring_calls`, and how candidates fared) and what it keeps (StepResult
    fields: APO's beam, OPRO's initial training score)."""

    prompt: str
    eval_score: float
    candidates: tuple[ScoredCandidate, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunShape:
    """What `plan` knows of a task's run before it starts."""

    steps: int
    train: int  # training examples used (train_limit applied)
    eval: int
    settings: OptimizerSettings


@dataclass(frozen=True)
class MethodPlan:
    """A method's calls over a run: optimizer calls by request kind, and (prompt, example) pairs scored (the initial
    prompt's eval scoring and the final test scoring are the loop's, counted by `plan` as for GPO)."""

    optimizer: dict[str, int]
    scored: int

    @property
    def optimizer_calls(self) -> int:
        return sum(self.optimizer.values())


class StepMethod(Protocol):
    name: str

    async def step(self, ctx: MethodContext) -> MethodStep: ...

    def planned(self, shape: RunShape) -> MethodPlan: ...

    def step1_request(self, *, initial_prompt: str, train: Sequence[Example], settings: OptimizerSettings,
                      task: str, placement: Any) -> str:
        """The step-1 request that produces candidates, as `plan --show-meta-prompt` shows it (scores not known
        before the run shown as they would be for score 0)."""
        ...


# --- shared ------------------------------------------------------------------------------------------------------


def read_candidate(raw: str, *, structured: bool, native: str | None = None) -> tuple[str | None, str]:
    """A reply's candidate: the method's own reading (`native`) where the reply has its markers, else gpo-ray's."""
    if native is not None:
        return native, "native"
    return extract_candidate(raw, structured=structured)


def admit_found(found: Sequence[tuple[str | None, str]], *, tried: frozenset[str] | set[str]
                ) -> tuple[list[str], dict[str, int]]:
    """The new, usable candidates of (candidate or None, how) pairs, in order, and how each fared (GPO's counts'
    names: admitted, duplicate, rejected:<reason>)."""
    gate = CandidateFilter(tried)
    out: list[str] = []
    for candidate, how in found:
        if candidate is None:
            gate.reject(how)
        elif gate.admit(candidate):
            out.append(candidate)
    return out, {k: v for k, v in gate.counts.items() if v}


def admitted(replies: Sequence[str], *, tried: frozenset[str] | set[str], structured: bool,
             native=lambda raw: None) -> tuple[list[str], dict[str, int]]:
    """The new, usable candidates of some replies (`native`: the method's own reading, None where the reply lacks
    its markers)."""
    return admit_found([read_candidate(raw, structured=structured, native=native(raw)) for raw in replies],
                       tried=tried)


def scored_candidates(current: str, prompts: Sequence[str], per_prompt: Sequence[Sequence[float]]
                      ) -> list[ScoredCandidate]:
    return [ScoredCandidate(prompt=p, score=mean(sc), edit_distance=word_edit_distance(current, p), examples=len(sc))
            for p, sc in zip(prompts, per_prompt, strict=True)]


def keep_best(current: TrajectoryEntry, scored: Sequence[ScoredCandidate]) -> tuple[str, float]:
    """APE's selection with k = 1: the best-scoring of the candidates and the current prompt; ties keep the current
    one, then the earlier candidate."""
    best_prompt, best_score = current.prompt, current.score
    for c in scored:
        if c.score > best_score:
            best_prompt, best_score = c.prompt, c.score
    return best_prompt, best_score


def best_of_step(scored: Sequence[ScoredCandidate]) -> ScoredCandidate | None:
    """OPRO's step result: its best-scoring new instruction (ties: the earlier one), None when it has none."""
    best = None
    for c in scored:
        if best is None or c.score > best.score:
            best = c
    return best


def _draw(pool: Sequence[Example], k: int, *parts: object) -> list[Example]:
    """k examples without replacement by a seeded RNG, in file order."""
    rng = random.Random(stable_seed(*parts))
    return [pool[i] for i in sorted(rng.sample(range(len(pool)), min(k, len(pool))))]


# --- APE ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApeMethod:
    """APE: step 1 proposes `candidates` instructions, each from its own `num_demos` training pairs (forward mode);
    every later step asks `candidates` variations of the current prompt (the iterative Monte Carlo search). The
    candidates are scored on the eval split; the step keeps the best of them and the current prompt (`keep_best`)."""

    name: str = "ape"

    def requests(self, t: int, current: str, train: Sequence[Example], settings: OptimizerSettings,
                 task: str) -> list[str]:
        if t == 1:
            return [ape_forward_request(_draw(train, settings.ape.num_demos, settings.seed, task, "ape_demos", i))
                    for i in range(settings.candidates)]
        return [resample_request(current)] * settings.candidates

    async def step(self, ctx: MethodContext) -> MethodStep:
        current = ctx.trajectory[-1]
        texts = self.requests(ctx.t, current.prompt, ctx.train_examples, ctx.settings, ctx.task.name)
        replies = await ctx.sample(CANDIDATES, texts, key="ape", structured=ctx.structured)
        prompts, fared = admitted(replies, tried=ctx.tried, structured=ctx.structured)
        per_prompt = await ctx.score(prompts, ctx.eval_examples) if prompts else []
        scored = scored_candidates(current.prompt, prompts, per_prompt)
        prompt, score = keep_best(current, scored)
        ctx.log("ape_step", proposals=len(texts), scored=len(scored), kept_current=prompt == current.prompt)
        return MethodStep(prompt, score, tuple(scored), counts={
            **fared, "optimizer_calls": len(texts), "scoring_calls": len(prompts) * len(ctx.eval_examples)})

    def planned(self, shape: RunShape) -> MethodPlan:
        n = shape.settings.candidates
        return MethodPlan(optimizer={"propose": n if shape.steps else 0, "resample": n * max(0, shape.steps - 1)},
                          scored=shape.steps * n * shape.eval)

    def step1_request(self, *, initial_prompt, train, settings, task, placement) -> str:
        return self.requests(1, initial_prompt, train, settings, task)[0]


# --- OPRO --------------------------------------------------------------------------------------------------------


# What plan's step-1 request shows for the initial instruction's score, not known before the run.
OPRO_SCORE_PLACEHOLDER = "<the initial instruction's training score out of 100; left out below the threshold>"


def opro_history(initial: str, initial_train_score: float, records: Sequence[Any]) -> list[tuple[str, float]]:
    """Every instruction scored so far with its training score: the initial one, then each step's candidates."""
    history = [(initial, initial_train_score)]
    for r in records:
        if r.step >= 1:
            history += [(c.prompt, c.score) for c in r.candidates]
    return history


@dataclass(frozen=True)
class OproMethod:
    """OPRO: the meta-prompt shows the best scored instructions by training score ascending (`opro_shown`) and a
    seeded draw of training problems; `candidates` instructions are asked and scored on the training split (the
    initial one too, at step 1). A step moves to its best new instruction (`best_of_step`), scored on the eval split."""

    name: str = "opro"

    def request(self, t: int, history: Sequence[tuple[str, float]], train: Sequence[Example],
                settings: OptimizerSettings, task: str, placement: Any) -> str:
        o = settings.opro
        exemplars = _draw(train, o.exemplars, settings.seed, task, "opro_exemplars", t)
        return opro_meta_prompt(history, exemplars, placement=placement, max_instructions=o.max_instructions,
                                threshold=o.score_threshold)

    async def step(self, ctx: MethodContext) -> MethodStep:
        s, t = ctx.settings, ctx.t
        current = ctx.trajectory[-1]
        initial = ctx.trajectory[0].prompt
        train = ctx.train_examples
        kept: dict[str, Any] = {}
        scoring = 0
        first = next((r for r in ctx.records if r.step == 1), None)
        if first is not None and first.train_score is not None:
            initial_train = first.train_score
        else:  # step 1: the initial instruction is scored on the training split like every other
            (initial_scores,) = await ctx.score([initial], train)
            initial_train = kept["train_score"] = mean(initial_scores)
            scoring += len(train)
        history = opro_history(initial, initial_train, ctx.records)
        text = self.request(t, history, train, s, ctx.task.name, s.placement)
        replies = await ctx.sample(CANDIDATES, [text] * s.candidates, key="opro", structured=ctx.structured)
        prompts, fared = admitted(replies, tried=ctx.tried, structured=ctx.structured, native=opro_extract)
        per_prompt = await ctx.score(prompts, train) if prompts else []
        scoring += len(prompts) * len(train)
        scored = scored_candidates(current.prompt, prompts, per_prompt)
        best = best_of_step(scored)
        counts = {**fared, "optimizer_calls": s.candidates}
        if best is None:
            ctx.log("no_candidate")
            return MethodStep(current.prompt, current.score, (), {**counts, "scoring_calls": scoring}, kept)
        eval_score = await ctx.eval_score(best.prompt)
        scoring += len(ctx.eval_examples)
        ctx.log("opro_step", shown=len(history), scored=len(scored), best_train=best.score, eval_score=eval_score)
        return MethodStep(best.prompt, eval_score, tuple(scored), {**counts, "scoring_calls": scoring}, kept)

    def planned(self, shape: RunShape) -> MethodPlan:
        n = shape.settings.candidates
        initial = shape.train if shape.steps else 0
        return MethodPlan(optimizer={"instructions": n * shape.steps},
                          scored=initial + shape.steps * (n * shape.train + shape.eval))

    def step1_request(self, *, initial_prompt, train, settings, task, placement) -> str:
        o = settings.opro
        exemplars = _draw(train, o.exemplars, settings.seed, task, "opro_exemplars", 1)
        text = opro_meta_prompt([(initial_prompt, 1.0)], exemplars, placement=placement,
                                max_instructions=o.max_instructions, threshold=0.0)
        return text.replace("\nscore:\n100\n", f"\nscore:\n{OPRO_SCORE_PLACEHOLDER}\n", 1)


# --- APO (ProTeGi) -----------------------------------------------------------------------------------------------


class UCBBandits:
    """ProTeGi's UCBBandits (evaluators.py, mode ucb): per arm the pulls' examples and score sums; `choose` takes the
    n arms with the highest mean + c * sqrt(log(t) / counts) (all-zero counts: a seeded random sample)."""

    def __init__(self, arms: int, *, samples: int, c: float, rng: random.Random) -> None:
        self.counts = [0.0] * arms
        self.scores = [0.0] * arms
        self.samples = samples
        self.c = c
        self.rng = rng

    def update(self, chosen: Sequence[int], scores: Sequence[float]) -> None:
        for i, score in zip(chosen, scores, strict=True):
            self.counts[i] += self.samples
            self.scores[i] += score * self.samples

    def get_scores(self) -> list[float]:
        return [s / n if n else 0.0 for s, n in zip(self.scores, self.counts, strict=True)]

    def choose(self, n: int, t: int) -> list[int]:
        if sum(self.counts) == 0:
            return self.rng.sample(range(len(self.counts)), n)
        means = self.get_scores()
        log_t = math.log(t) if t > 0 else -math.inf
        ucb = [m + self.c * math.sqrt(max(log_t, 0.0) / (k + 1e-3)) for m, k in zip(means, self.counts, strict=True)]
        ascending = sorted(range(len(ucb)), key=lambda i: ucb[i])  # np.argsort(ucb)[::-1][:n]
        return ascending[::-1][:n]


def beam_of(estimates: Sequence[float], pool: Sequence[str], beam_size: int) -> list[tuple[str, float]]:
    """main.py's selection: (score, prompt) pairs sorted in reverse (ties: the larger text first), the first
    beam_size."""
    ranked = sorted(zip(estimates, pool, strict=True), reverse=True)
    return [(p, s) for s, p in ranked[:beam_size]]


def apo_stream_slice(train: Sequence[Example], start: int, size: int, *parts: object) -> list[Example]:
    """`size` examples from position `start` of a seeded permutation of the training split, cycled: the run's one
    stream of training draws, so a step's draws (its minibatch, its bandit rounds) never repeat a (prompt, example)
    pair until the split is used up (ProTeGi draws each at random)."""
    if not train or size <= 0:
        return []
    order = list(range(len(train)))
    random.Random(stable_seed(*parts, "apo_stream")).shuffle(order)
    return [train[order[(start + i) % len(order)]] for i in range(min(size, len(train)))]


@dataclass(frozen=True)
class ApoShape:
    """What one APO step makes per beam prompt when every reply gives what it is asked and nothing repeats."""

    gradient_calls: int
    edit_calls: int
    paraphrase_calls: int
    expansion: int


def apo_shape(settings: OptimizerSettings) -> ApoShape:
    a = settings.apo
    reasons = a.n_gradients * a.gradients_per_error
    sections = reasons * a.steps_per_gradient
    paraphrases = (sections + 1) * a.mc_samples_per_step
    return ApoShape(a.n_gradients, reasons, paraphrases, min(a.max_expansion_factor, sections + paraphrases))


@dataclass(frozen=True)
class ApoMethod:
    """APO (ProTeGi): per step, each beam prompt (step 1: the initial prompt) is scored on a minibatch; `n_gradients`
    gradient requests, each over a seeded sample of its wrong examples, give reasons; each reason one edit request;
    each new prompt and the beam prompt `mc_samples_per_step` paraphrases; at most `max_expansion_factor` new ones
    are kept (a seeded sample). The UCB bandit then scores the expansion and the beam on training draws and the
    best `beam_size` by its estimates are the next beam, the first the step's prompt."""

    name: str = "apo"

    def errors(self, minibatch: Sequence[Example], graded: Sequence[tuple]) -> list[tuple[str, str, str]]:
        """(text, label, prediction) of the minibatch examples the prompt got wrong (score below 1)."""
        return [(e.input, e.answers[0] if e.answers else "", str(g[1]))
                for e, g in zip(minibatch, graded, strict=True) if g[0] < 1.0]

    async def expand(self, ctx: MethodContext, b: int, prompt: str, minibatch: Sequence[Example],
                     rng: random.Random, counts: dict[str, int]) -> list[str]:
        a = ctx.settings.apo
        graded = await ctx.graded(prompt, minibatch)
        errors = self.errors(minibatch, graded)
        error_strings = [apo_error_string(rng.sample(errors, min(len(errors), a.errors_per_gradient)))
                         for _ in range(a.n_gradients)]
        replies = await ctx.sample(FEEDBACK, [apo_gradient_request(prompt, e, a.gradients_per_error)
                                              for e in error_strings], key=f"apo_gradient:{b}")
        gradients = [(reason, err) for reply, err in zip(replies, error_strings, strict=True)
                     for reason in parse_tagged_text(reply)[: a.gradients_per_error]]
        edits = await ctx.sample(CANDIDATES, [apo_edit_request(prompt, err, reason, a.steps_per_gradient)
                                              for reason, err in gradients], key=f"apo_edit:{b}",
                                structured=ctx.structured)
        sections: list[str] = []
        for reply in edits:
            parsed = parse_tagged_text(reply)[: a.steps_per_gradient]
            if not parsed:
                found = extract_candidate(reply, structured=ctx.structured)[0]
                parsed = [found] if found else []
            sections += [p for p in parsed if p]
        mc_texts = [resample_request(s) for s in [*sections, prompt] for _ in range(a.mc_samples_per_step)]
        paraphrased = await ctx.sample(CANDIDATES, mc_texts, key=f"apo_mc:{b}", structured=ctx.structured)
        new, fared = admit_found([*((s, "native") for s in sections),
                                  *(read_candidate(raw, structured=ctx.structured) for raw in paraphrased)],
                                 tried=ctx.tried)
        for k, v in fared.items():
            counts[k] = counts.get(k, 0) + v
        counts["optimizer_calls"] += len(error_strings) + len(gradients) + len(mc_texts)
        counts["scoring_calls"] += len(minibatch)
        if len(new) > a.max_expansion_factor:
            new = rng.sample(new, a.max_expansion_factor)
        return new

    async def step(self, ctx: MethodContext) -> MethodStep:
        s, t, a = ctx.settings, ctx.t, ctx.settings.apo
        train = ctx.train_examples
        previous = ctx.records[-1] if ctx.records and ctx.records[-1].step >= 1 else None
        beam = list(previous.beam) if previous is not None and previous.beam else [ctx.trajectory[-1].prompt]
        per_step = a.minibatch_size + a.eval_rounds * a.samples_per_eval
        stream = (s.seed, ctx.task.name)
        offset = (t - 1) * per_step
        minibatch = apo_stream_slice(train, offset, a.minibatch_size, *stream)
        rng = random.Random(stable_seed(s.seed, ctx.task.name, "apo", t))
        counts = {"optimizer_calls": 0, "scoring_calls": 0}
        new: list[str] = []
        for b, prompt in enumerate(beam):
            for p in await self.expand(ctx, b, prompt, minibatch, rng, counts):
                if p not in new:
                    new.append(p)
        pool = [*new, *(p for p in beam if p not in new)]
        estimates = [1.0]
        if len(pool) > 1:
            bandit = UCBBandits(len(pool), samples=min(a.samples_per_eval, len(train)), c=a.c, rng=rng)
            per_round = min(a.eval_prompts_per_round, len(pool))
            for r in range(a.eval_rounds):
                chosen = bandit.choose(per_round, r)
                data = apo_stream_slice(train, offset + a.minibatch_size + r * a.samples_per_eval,
                                        a.samples_per_eval, *stream)
                per_prompt = await ctx.score([pool[i] for i in chosen], data)
                bandit.update(chosen, [mean(sc) for sc in per_prompt])
                counts["scoring_calls"] += len(chosen) * len(data)
            estimates = bandit.get_scores()
        next_beam = beam_of(estimates, pool, a.beam_size)
        best = next_beam[0][0]
        known = {e.prompt: e.score for e in ctx.trajectory}
        if best in known:  # already on the trajectory: its eval score is known (plan counts the scoring: a bound)
            eval_score = known[best]
            counts["reused_score"] = 1
        else:
            eval_score = await ctx.eval_score(best)
            counts["scoring_calls"] += len(ctx.eval_examples)
        current = ctx.trajectory[-1].prompt
        candidates = tuple(ScoredCandidate(prompt=p, score=e, edit_distance=word_edit_distance(current, p))
                           for p, e in zip(pool, estimates, strict=True))
        ctx.log("apo_step", beam=len(beam), expansion=len(new), pool=len(pool), best_estimate=next_beam[0][1])
        return MethodStep(best, eval_score, candidates, counts, kept={"beam": tuple(p for p, _ in next_beam)})

    def planned(self, shape: RunShape) -> MethodPlan:
        a, shp = shape.settings.apo, apo_shape(shape.settings)
        optimizer = {"gradients": 0, "edits": 0, "paraphrases": 0}
        scored = 0
        beam = 1
        samples = min(a.samples_per_eval, shape.train)
        for _ in range(shape.steps):
            optimizer["gradients"] += beam * shp.gradient_calls
            optimizer["edits"] += beam * shp.edit_calls
            optimizer["paraphrases"] += beam * shp.paraphrase_calls
            pool = beam + beam * shp.expansion
            scored += beam * min(a.minibatch_size, shape.train)
            if pool > 1:
                scored += a.eval_rounds * min(a.eval_prompts_per_round, pool) * samples
            scored += shape.eval  # the step's prompt on the eval split (none when it is already on the trajectory)
            beam = min(a.beam_size, pool)
        return MethodPlan(optimizer=optimizer, scored=scored)

    def step1_request(self, *, initial_prompt, train, settings, task, placement) -> str:
        return apo_gradient_request(initial_prompt, "<the wrong examples of the minibatch>",
                                    settings.apo.gradients_per_error)


METHODS: dict[str, StepMethod] = {m.name: m for m in (ApeMethod(), ApoMethod(), OproMethod())}
