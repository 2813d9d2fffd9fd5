"""Choosing prompts: the next step's prompt, and the run's answer.

- `select_next` (the paper's rule): among the step's scored candidates, the best-scoring one whose
  prompt was not chosen at an earlier step, so the trajectory never revisits a prompt. Ties go to
  the smaller edit (the more conservative move), then to the lexicographically smaller prompt, so
  the same scores always give the same choice. "Not chosen before" ignores case and whitespace, as
  de-duplication does.
- `select_best`: the trajectory prompt with the best eval score; ties go to the earliest step, which
  prefers the simpler prompt that was found first (often the initial one) over a lucky later rewrite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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
