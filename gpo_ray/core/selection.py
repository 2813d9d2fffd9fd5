"""Choosing prompts: the next step's prompt, and the run's answer.

- `select_next` (the paper's rule): among the step's scored candidates, the best-scoring one whose
  prompt was not chosen at an earlier step, so the trajectory never revisits a prompt. Ties go to
  the smaller edit (the more conservative move), then to the lexicographically smaller prompt, so
  the same scores always give the same choice. "Not chosen before" ignores case and whitespace, as
  de-duplication does.
- `paper_ranking` / `paper_select` (`optimizer.selection: paper`): the official code's ranking and rule, quirks
  included (see their docstrings); `paper_new_order` orders the step's new candidates in it.
- `select_best`: the trajectory prompt with the best eval score; ties go to the earliest step, which
  prefers the simpler prompt that was found first (often the initial one) over a lucky later rewrite.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from gpo_ray.core.batches import stable_seed
from gpo_ray.core.extraction import prompt_key
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry


def _score_or_worst(score: float) -> float:
    """NaN would make ordering arbitrary; treat it as the worst possible score."""
    return -math.inf if math.isnan(score) else score


def select_next(candidates: Sequence[ScoredCandidate], *, chosen_before: Iterable[str]) -> ScoredCandidate | None:
    """The best eligible candidate (see module docstring), or None if every candidate was chosen before."""
    excluded = {prompt_key(p) for p in chosen_before}
    eligible = [c for c in candidates if prompt_key(c.prompt) not in excluded]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (-_score_or_worst(c.score), c.edit_distance, c.prompt))


def select_best(trajectory: Sequence[TrajectoryEntry]) -> TrajectoryEntry:
    """The best-scoring trajectory entry; ties go to the earliest step."""
    if not trajectory:
        raise ValueError("cannot select the best prompt of an empty trajectory")
    return min(trajectory, key=lambda e: (-_score_or_worst(e.score), e.step))


# --- selection: paper (the official optimize.py rule) -------------------------------------------------------------


def paper_ranking(
    current: str, repeated: Sequence[tuple[str, float]], new: Sequence[tuple[str, float]]
) -> list[tuple[str, float]]:
    """The official step's ranking (`current_instruction2score`): a dict that starts with the current prompt at 0.0,
    then takes the candidates generated at an earlier step with their earlier eval score (in generation order), then
    the step's new candidates with their eval score (in the order given); a prompt already in it keeps its place and
    takes the new score. Sorted by score, highest first, by a stable sort: ties keep that order."""
    ranking: dict[str, float] = {current: 0.0}
    for prompt, score in (*repeated, *new):
        ranking[prompt] = score
    return sorted(ranking.items(), key=lambda item: -_score_or_worst(item[1]))


def paper_select(ranking: Sequence[tuple[str, float]], *, chosen_before: Iterable[str]) -> tuple[str, float]:
    """The official update: the first ranked prompt not chosen at an earlier step (exact text; the initial prompt is
    not among them, the official slip), else the first ranked. Returns (prompt, the score it is recorded with)."""
    excluded = set(chosen_before)
    for prompt, score in ranking:
        if prompt not in excluded:
            return prompt, score
    return ranking[0]


def paper_new_order(new: Sequence[str], *, order: str, seed: int, task: str, step: int) -> list[str]:
    """The order of the step's new candidates in the ranking. The official `list(set(new))` follows the string hash
    seed of the process (PYTHONHASHSEED, random by default), which cannot be reproduced in-process in general:
    `seeded` shuffles the generation order by (seed, task, step), an equally arbitrary but repeatable order;
    `generated` keeps the generation order."""
    out = list(new)
    if order == "seeded":
        random.Random(stable_seed(seed, task, step, "new_candidates")).shuffle(out)
    elif order != "generated":
        raise ValueError(f"unknown new_candidate_order: {order!r}")
    return out
