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


@dataclass(frozen=True)
class WrongExample:
    """A training-batch example the current prompt got wrong (score 0), as the feedback request shows it."""

    question: str
    prediction: str  # what the task model answered (core/evaluation.py: shown_prediction)
    answer: str | None  # the reference answer; None for a task without one (a judge or a function decides)
    feedback: str | None = None  # what the metric said was wrong (a spec's feedback); None for the built-in kinds
