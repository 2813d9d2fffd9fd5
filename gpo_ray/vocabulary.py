"""The words that configuration, the core, the run directory, the metrics and the cluster all use, each spelled
once: the ground floor every other module may import (it imports nothing of gpo_ray)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, StrEnum


class MetricKind(str, Enum):
    MULTIPLE_CHOICE = "multiple_choice"  # option letter (A), (B), ...
    EXACT_MATCH = "exact_match"  # BBH free-form answers
    NUMERIC = "numeric"  # GSM8K: last number in the output
    ROUGE_L = "rouge_l"  # WebNLG: ROUGE-L F against the best reference


class PromptPlacement(str, Enum):
    """Where the optimized prompt goes in a task-model request (not where an actor runs)."""

    END = "end"  # after the question (the paper's default)
    BEGINNING = "beginning"  # before the question
    SYSTEM = "system"  # as the system message


class RunStatus(StrEnum):
    """The `status` of a run and of each task in results.json (a str: it is written and compared as its value)."""

    RUNNING = "running"
    COMPLETED = "completed"
    BUDGET_EXHAUSTED = "budget_exhausted"  # the global budget stopped it before its last step
    STOPPED = "stopped"  # the run ended on an error; `resume` continues it

    @classmethod
    def of_tasks(cls, statuses: Iterable[str]) -> RunStatus:
        """A finished run's status from its tasks': budget_exhausted as soon as one task did not complete."""
        return cls.BUDGET_EXHAUSTED if any(s != cls.COMPLETED for s in statuses) else cls.COMPLETED


class Role(StrEnum):
    """The LLM roles: names of usage.json's sections, cache folders, log and metric tags."""

    OPTIMIZER = "optimizer"
    TASK_MODEL = "task_model"
    JUDGE = "judge"  # the LLM judge of a `kind: judge` metric (config role judge_model)


class ConfigRole(StrEnum):
    """A run config's role blocks (RunConfig's fields of the same names): which endpoint and model a role's requests
    go to, sampled how. Each sends as the Role of the same line: optimizer_model as optimizer, judge_model as judge."""

    TASK_MODEL = "task_model"
    OPTIMIZER_MODEL = "optimizer_model"
    JUDGE_MODEL = "judge_model"  # asked only in a run with a `kind: judge` metric


class Purpose(StrEnum):
    """What one LLM request is for. Sent beside the request as metadata (the X-GPO-Purpose header, with the role in
    X-GPO-Role: llm/transport.py), never in its body or cache key: the fake endpoint answers by it, real ones ignore
    it."""

    ANSWER = "answer"  # the task model's reply to a question under the prompt
    SECOND_TURN = "second_turn"  # the task model asked, after its reply, for the final answer alone
    CANDIDATES = "candidates"  # the optimizer's meta-prompt: new prompts
    FEEDBACK = "feedback"  # the optimizer asked why the current prompt fails (direction feedback)
    SUMMARIZE = "summarize"  # the optimizer asked to merge the carried prompt or problems with the step's (momentum)
    JUDGE = "judge"  # the judge's grading of one reply

    @property
    def role(self) -> Role:
        """The role whose model is asked for this."""
        if self in (Purpose.ANSWER, Purpose.SECOND_TURN):
            return Role.TASK_MODEL
        return Role.JUDGE if self is Purpose.JUDGE else Role.OPTIMIZER


class NodeResource(StrEnum):
    """Ray custom resources that say where which actor may run (ray_cluster.yaml and deploy/ put them on nodes)."""

    HEAD = "gpo_head"
    REFINER = "gpo_refiner"
    EVALUATOR = "gpo_evaluator"
