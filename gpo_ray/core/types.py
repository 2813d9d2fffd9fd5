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
    score: float  # mean score in [0, 1] on the examples it was scored on (training batch or eval split)
    edit_distance: int
    examples: int | None = None  # how many examples the score is over (adaptive evaluation stops some early)
