"""Candidate generation: meta-prompt -> optimizer LLM samples -> extracted, de-duplicated, budget-checked prompts.

Pure apart from the injected LLM client: the reference optimizer and the refiner actors run this same code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from gpo_ray.core.batches import stable_seed
from gpo_ray.core.design.style import STYLES, MetaPromptParts
from gpo_ray.core.edit_distance import within_budget
from gpo_ray.core.extraction import (
    CandidateFilter,
    extract_candidate,
    extract_paper_candidate,
)
from gpo_ray.core.meta_prompt import (
    CANDIDATE_JSON_SCHEMA,
    DEFAULT_TEMPLATE,
    MetaPromptTemplate,
)
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.llm.protocol import ChatRequest, LLMClient, user_message
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement, Purpose


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a refiner needs for one step of one task; the edit budget comes from the one shared schedule."""

    task: str
    step: int
    current_prompt: str
    retrieved: tuple[TrajectoryEntry, ...]
    format_examples: tuple[Example, ...]
    edit_budget: int
    n: int
    tried: tuple[str, ...]  # every prompt already on the trajectory or scored for this task
    placement: PromptPlacement
    structured: bool
    enforcement: str = "soft"  # "soft" | "strict"
    max_rerequests: int = 2
    seed: int = 0
    temperature: float = 1.0
    max_tokens: int | None = None
    template: MetaPromptTemplate = DEFAULT_TEMPLATE
    style: str = "own"  # the meta-prompt style's name (core/design/style.py): "own" | "paper"
    current_score: float | None = None  # shown by the paper text only when nothing is retrieved
    update: str = "generate"  # "generate" | "edit" (optimizer.update)
    budget_in_prompt: bool = True  # optimizer.budget_in_prompt
    gradient: str | None = None  # optimizer.direction feedback: the problems shown (core/variants.py)
    previous: TrajectoryEntry | None = None  # optimizer.momentum summarize over prompts: the carried prompt
    extraction: str = "own"  # "own" | "paper" (optimizer.candidate_extraction)


def meta_prompt_for(request: GenerationRequest) -> str:
    """The optimizer request's text for this generation request, in the request's meta-prompt style."""
    return STYLES[request.style].meta_prompt(MetaPromptParts(
        current_prompt=request.current_prompt,
        retrieved=request.retrieved,
        format_examples=request.format_examples,
        edit_budget=request.edit_budget,
        placement=request.placement,
        structured=request.structured,
        template=request.template,
        current_score=request.current_score,
        update=request.update,
        budget_in_prompt=request.budget_in_prompt,
        gradient=request.gradient,
        previous=request.previous,
    ))


@dataclass(frozen=True)
class OptimizerTextRequest:
    """One optimizer call besides the candidates (the feedback, a summary: core/variants.py): temperature 0 and one
    reply, as the official code asks for them."""

    task: str
    step: int
    purpose: str  # "feedback" | "summarize" (core/variants.py), sent as the request's X-GPO-Purpose
    text: str
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int | None = None
    # A rival method's sample (core/design/method.py): its own seed from this key, and the candidate JSON schema
    # where `structured`. None: the one reply of a feedback or summarize request, as before.
    sample_key: str | None = None
    structured: bool = False


async def ask_optimizer(llm: LLMClient, request: OptimizerTextRequest) -> str:
    """The optimizer's raw reply to one such request (the refiner actors and the reference optimizer run this)."""
    reply = await llm.complete(
        ChatRequest(
            messages=user_message(request.text),
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            seed=(stable_seed(request.seed, request.task, request.step, request.purpose) if request.sample_key is None
                  else stable_seed(request.seed, request.task, request.step, request.purpose, request.sample_key)),
            json_schema=CANDIDATE_JSON_SCHEMA if request.structured else None,
            purpose=request.purpose,
        )
    )
    return reply.text


@dataclass(frozen=True)
class GenerationResult:
    candidates: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


async def generate_candidates(llm: LLMClient, request: GenerationRequest) -> GenerationResult:
    """Ask for `n` samples concurrently; in strict mode re-ask for the ones over budget, a bounded number of rounds."""
    meta = meta_prompt_for(request)
    accepted: list[str] = []
    counts: Counter[str] = Counter()
    paper = request.extraction == "paper"
    gate = CandidateFilter(request.tried, paper=paper)
    rounds = 1 + (request.max_rerequests if request.enforcement == "strict" else 0)
    for round_no in range(rounds):
        missing = request.n - len(accepted)
        if missing <= 0:
            break
        offset = round_no * request.n
        replies = await asyncio.gather(
            *(
                llm.complete(
                    ChatRequest(
                        messages=user_message(meta),
                        temperature=request.temperature,
                        max_tokens=request.max_tokens,
                        seed=stable_seed(request.seed, request.task, request.step, offset + i),
                        json_schema=CANDIDATE_JSON_SCHEMA if request.structured else None,
                        sample_index=offset + i,
                        purpose=Purpose.CANDIDATES,
                    )
                )
                for i in range(missing)
            )
        )
        for reply in replies:
            if paper:
                candidate, how = extract_paper_candidate(reply.text), "paper"
            else:
                candidate, how = extract_candidate(reply.text, structured=request.structured)
            counts[f"extracted:{how}" if candidate is not None else how] += 1
            if candidate is None:
                continue
            if request.enforcement == "strict" and not within_budget(
                request.current_prompt, candidate, request.edit_budget
            ):
                counts["rejected:over_budget"] += 1
                continue
            if gate.admit(candidate):
                accepted.append(candidate)
                counts["admitted"] += 1
            else:
                counts["duplicate"] += 1
    return GenerationResult(candidates=tuple(accepted), counts=dict(counts))
