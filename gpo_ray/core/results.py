"""What one task's optimization produced; the shape of results.json and of the per-step checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gpo_ray.core.types import ScoredCandidate
from gpo_ray.vocabulary import RunStatus


@dataclass(frozen=True)
class StepResult:
    """One completed step: the budget it ran under, the prompt it moved to, every scored candidate."""

    step: int
    edit_budget: int
    prompt: str
    eval_score: float
    candidates: tuple[ScoredCandidate, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)  # admitted / duplicate / rejected:<reason>
    # optimizer.direction feedback: the step's feedback as the optimizer gave it (before any momentum).
    feedback: str | None = None
    # optimizer.momentum.update summarize: what the step carries to the next (the merged problems, or the merged
    # prompt with momentum_score). In the checkpoint, so a resumed run goes on from it without asking again.
    momentum: str | None = None
    momentum_score: float | None = None
    # optimizer.trace_scores: the current prompt's score on the step's training batch (before the step) and the
    # chosen prompt's on the test split (step 0: the initial prompt's), as the official code logs them.
    train_score: float | None = None
    test_score: float | None = None
    # optimizer.method apo: the beam the step keeps for the next (its first prompt is the step's `prompt`).
    beam: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "step": self.step,
            "edit_budget": self.edit_budget,
            "prompt": self.prompt,
            "eval_score": self.eval_score,
            "candidates": [asdict(c) for c in self.candidates],
            "counts": dict(self.counts),
        }
        # Only when set: a default run's records keep their shape.
        for key in ("feedback", "momentum", "momentum_score", "train_score", "test_score"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.beam is not None:
            d["beam"] = list(self.beam)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        return cls(
            step=int(d["step"]),
            edit_budget=int(d["edit_budget"]),
            prompt=str(d["prompt"]),
            eval_score=float(d["eval_score"]),
            candidates=tuple(ScoredCandidate(**c) for c in d.get("candidates", [])),
            counts=dict(d.get("counts", {})),
            feedback=None if d.get("feedback") is None else str(d["feedback"]),
            momentum=None if d.get("momentum") is None else str(d["momentum"]),
            momentum_score=None if d.get("momentum_score") is None else float(d["momentum_score"]),
            train_score=None if d.get("train_score") is None else float(d["train_score"]),
            test_score=None if d.get("test_score") is None else float(d["test_score"]),
            beam=None if d.get("beam") is None else tuple(str(p) for p in d["beam"]),
        )


# How many of the best prompt's lowest-scored test examples a result keeps, and how much of their text.
SHOWN_EXAMPLES = 5
SHOWN_CHARS = 400


@dataclass(frozen=True)
class GradedExample:
    """One test example as the best prompt fared on it: what a report shows beside a metric of the user's own."""

    example_id: str | None
    input: str
    reply: str
    score: float
    feedback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.example_id, "input": self.input, "reply": self.reply, "score": self.score,
                "feedback": self.feedback}


def lowest_scored(examples: Sequence[Any], graded: Sequence[tuple[float, str, str | None]], *,
                  keep: int = SHOWN_EXAMPLES) -> tuple[GradedExample, ...]:
    """The `keep` lowest-scored examples (ties: data order), texts shortened to SHOWN_CHARS."""
    order = sorted(range(len(graded)), key=lambda i: (graded[i][0], i))[:keep]
    return tuple(GradedExample(example_id=examples[i].id, input=_shortened(examples[i].input),
                               reply=_shortened(graded[i][1]), score=graded[i][0], feedback=graded[i][2])
                 for i in order)


def _shortened(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


@dataclass(frozen=True)
class TaskResult:
    task: str
    initial_prompt: str
    initial_eval_score: float
    initial_test_score: float | None
    best_prompt: str
    best_eval_score: float
    best_test_score: float | None
    best_step: int
    steps: tuple[StepResult, ...]
    status: str = RunStatus.COMPLETED  # or RunStatus.BUDGET_EXHAUSTED
    # A metric of the user's own (a spec): the best prompt's lowest-scored test examples, with the reply and what
    # the metric said. Empty for the built-in metrics, whose results keep their shape.
    lowest_test_examples: tuple[GradedExample, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {
            "initial_prompt": self.initial_prompt,
            "initial_eval_score": self.initial_eval_score,
            "initial_test_score": self.initial_test_score,
            "best_prompt": self.best_prompt,
            "best_eval_score": self.best_eval_score,
            "best_test_score": self.best_test_score,
            "best_step": self.best_step,
            "status": self.status,
            "steps": [s.to_dict() for s in self.steps],
        }
        if self.lowest_test_examples:
            d["lowest_test_examples"] = [g.to_dict() for g in self.lowest_test_examples]
        return d
