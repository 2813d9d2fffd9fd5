"""Values the GPO loop passes around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrajectoryEntry:
    """A prompt on the optimization trajectory: the initial prompt (step 0) or the one chosen at a step."""

    prompt: str
    score: float  # eval score in [0, 1]
    step: int


@dataclass(frozen=True)
class ScoredCandidate:
    prompt: str
    score: float  # score in [0, 1] on the step's training batch
    edit_distance: int
