"""The edit budget: how many words the optimizer may change at a step (GPO's "learning rate").

GPO bounds each update by a word-level edit distance that decays over the run: large moves early,
fine-tuning late. The decay follows the paper's code exactly (``int`` truncation included), so a run
here changes prompts by the same amounts as the reference implementation.

Step ``t`` counts the completed steps of the trajectory: the first optimization step is ``t = 1``
and the last is ``t = T`` (``total_steps``). An optional linear warmup ramps the budget up to
``initial`` over the first ``warmup_steps`` steps; the decay then runs over the remaining steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gpo_ray.config import ScheduleConfig

ScheduleKind = Literal["fixed", "linear", "cosine"]
_KINDS: tuple[str, ...] = ("fixed", "linear", "cosine")


def total_steps(train_size: int, *, batch_size: int, epochs: int) -> int:
    """T = epochs * steps_per_epoch; a final partial batch counts as a step when it is at least half full."""
    if train_size < 0:
        raise ValueError(f"train_size must be >= 0, got {train_size}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if train_size == 0:
        return 0
    full, remainder = divmod(train_size, batch_size)
    steps_per_epoch = full + (1 if remainder >= batch_size / 2 else 0)
    return epochs * max(steps_per_epoch, 1)


@dataclass(frozen=True)
class EditBudgetSchedule:
    """The per-step word budget N(t) for t = 1..total_steps.

    Without warmup (W = 0):
      fixed:  N(t) = initial
      linear: N(t) = int(initial - (initial - final) * t / T)
      cosine: N(t) = int(final + (initial - final) * 0.5 * (1 + cos(pi * t / T)))
    With warmup W > 0: N(t) = int(initial * t / W) while t < W; from t = W on, the decay above with
    t / T replaced by (t - W) / (T - W). When T == W the warmup fills the whole run and step T
    gets the full ``initial`` budget (decay progress 0), continuing the ramp rather than jumping to
    ``final``.
    """

    kind: ScheduleKind
    initial: int
    final: int
    warmup_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"schedule kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        for name in ("initial", "final", "warmup_steps", "total_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"schedule {name} must be >= 0, got {getattr(self, name)}")
        if self.kind != "fixed" and self.final > self.initial:
            raise ValueError(f"schedule final ({self.final}) must not exceed initial ({self.initial})")

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, *, total_steps: int) -> EditBudgetSchedule:
        return cls(
            kind=cfg.kind,
            initial=cfg.initial,
            final=cfg.final,
            warmup_steps=cfg.warmup_steps,
            total_steps=total_steps,
        )

    def budget(self, t: int) -> int:
        """Words the optimizer may change at step t (1-based, 1..total_steps)."""
        T, W = self.total_steps, self.warmup_steps
        if not 1 <= t <= T:
            raise ValueError(f"step t must be in 1..{T}, got {t}")
        if W > 0 and t < W:
            return int(self.initial * t / W)
        if self.kind == "fixed":
            return self.initial
        # Progress through the decay as done/span; with W = 0 this is exactly the paper's t / T.
        done, span = t - W, T - W
        if span <= 0:
            done, span = 0, 1
        drop = self.initial - self.final
        if self.kind == "linear":
            return int(self.initial - drop * done / span)
        return int(self.final + drop * 0.5 * (1 + math.cos(math.pi * done / span)))

    def as_list(self) -> list[int]:
        """N(1), ..., N(T): the whole schedule, for reports and checkpoints."""
        return [self.budget(t) for t in range(1, self.total_steps + 1)]
