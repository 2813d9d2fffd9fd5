"""The budget axis (optimizer.schedule, budget_in_prompt, edit_enforcement, max_rerequests): the edit budget N(t)
of each step, whether the meta-prompt states it (the official w_lr / wo_lr), and how many candidate rounds a step
may ask (strict enforcement re-asks for over-budget candidates): what `plan` counts as candidate calls."""

from __future__ import annotations

from dataclasses import dataclass

from gpo_ray.config import OptimizerSettings, ScheduleConfig
from gpo_ray.core.schedule import EditBudgetSchedule


@dataclass(frozen=True)
class EditBudget:
    schedule_config: ScheduleConfig
    in_prompt: bool = True
    strict: bool = False
    max_rerequests: int = 0

    @classmethod
    def of(cls, settings: OptimizerSettings) -> EditBudget:
        return cls(settings.schedule, in_prompt=settings.budget_in_prompt,
                   strict=settings.edit_enforcement == "strict", max_rerequests=settings.max_rerequests)

    def schedule(self, *, total_steps: int) -> EditBudgetSchedule:
        return EditBudgetSchedule.from_config(self.schedule_config, total_steps=total_steps)

    @property
    def rounds(self) -> int:
        """Candidate rounds per step at most: one, and the strict re-asks."""
        return 1 + (self.max_rerequests if self.strict else 0)
