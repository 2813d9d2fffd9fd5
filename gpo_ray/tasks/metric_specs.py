"""Scoring a reply by a metric spec (config.PythonMetric, config.ChecksMetric): a score in [0, 1] and, where the
reply falls short, a short feedback text that the feedback direction shows the optimizer.

Pure apart from calling the user's function: no Ray, no I/O of its own. The evaluator actors call it (through
core/evaluation.py), so a Python metric runs where the task model's replies arrive, never in the driver. Anything
wrong with a metric's answer - it raised, it returned NaN, 1.5 or a string - is a `MetricError`, never a clamp.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpo_ray.config import (
    ChecksMetric,
    ContainsCheck,
    JsonCheck,
    JudgeMetric,
    MetricCheck,
    OneOfCheck,
    PythonMetric,
    RegexCheck,
    SimilarityCheck,
)
from gpo_ray.errors import error_line
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

MetricSpec = PythonMetric | ChecksMetric | JudgeMetric


@dataclass(frozen=True)
class Judgement:
    """A metric's verdict on one reply."""

    score: float
    feedback: str | None = None  # what was wrong, for the feedback direction; None when nothing was said


class MetricError(Exception):
    """The metric could not score a reply: it raised, or returned something that is not a score."""


def metric_name(metric: MetricKind | MetricSpec) -> str:
    """How logs and messages name a metric: the kind, the function, "checks" or "judge"."""
    if isinstance(metric, PythonMetric):
        return metric.function
    if isinstance(metric, ChecksMetric):
        return "checks"
    if isinstance(metric, JudgeMetric):
        return "judge"
    return MetricKind(metric).value


def metric_key(metric: MetricKind | MetricSpec) -> str:
    """A metric as a stable string, for score-cache keys (a spec holds dicts, which do not hash)."""
    if isinstance(metric, (PythonMetric, ChecksMetric, JudgeMetric)):
        return metric.model_dump_json(by_alias=True)
    return MetricKind(metric).value


def example_fields(example: Example) -> dict[str, Any]:
    """What a Python metric gets as `example`: the data row's columns as read (the answer's under its own
    name, as written), then id, input, answer (the first reference, as text) and answers (all of them)."""
    fields = dict(example.fields)
    fields.update(id=example.id, input=example.input, answer=example.answers[0] if example.answers else None,
                  answers=list(example.answers))
    return fields


def judge_reply(metric: MetricSpec, example: Example, reply: str, *,
                function: Callable[..., Any] | None = None) -> Judgement:
    """Score `reply` by the spec; `function` is the Python metric's callable (tasks/metric_functions.py loads it).
    Raises MetricError for anything that is not a score."""
    if isinstance(metric, PythonMetric):
        if function is None:
            raise ValueError("a python metric needs its function")
        try:
            value = function(example_fields(example), reply)
        except Exception as e:  # the user's code: any failure is this example's metric error
            raise MetricError(f"{type(e).__name__}: {error_line(e)}") from e
        return judgement_of(value)
    if isinstance(metric, JudgeMetric):
        raise TypeError("a judge metric asks the judge model: tasks/judge.py ask_judge")
    return _judge_checks(metric, example, reply)


def judgement_of(value: Any) -> Judgement:
    """A Python metric's return value as a judgement: a score in [0, 1] (bool allowed) or (score, feedback)."""
    feedback = None
    if isinstance(value, tuple):
        if len(value) != 2 or not (value[1] is None or isinstance(value[1], str)):
            raise MetricError(f"returned {_shown(value)}; expected a score in [0, 1] or (score, feedback text)")
        value, feedback = value
    if isinstance(value, bool):
        return Judgement(float(value), feedback or None)
    if not isinstance(value, (int, float)):
        raise MetricError(f"returned {_shown(value)}; expected a score in [0, 1] or (score, feedback text)")
    score = float(value)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise MetricError(f"returned the score {score!r}, outside [0, 1]")
    return Judgement(score, feedback or None)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# --- checks ---------------------------------------------------------------------------------------------------


def _judge_checks(metric: ChecksMetric, example: Example, reply: str) -> Judgement:
    """The weighted mean of the checks; the failed checks' feedback joined."""
    total = sum(c.weight for c in metric.checks)
    score, said = 0.0, []
    for check in metric.checks:
        one = _judge_check(check, example, reply)
        score += check.weight * one.score
        if one.feedback:
            said.append(one.feedback)
    return Judgement(min(1.0, score / total), "; ".join(said) or None)


def _judge_check(check: MetricCheck, example: Example, reply: str) -> Judgement:
    if isinstance(check, ContainsCheck):
        found = check.text in reply if check.case_sensitive else check.text.casefold() in reply.casefold()
        return Judgement(1.0) if found else Judgement(0.0, f"reply does not contain {check.text!r}")
    if isinstance(check, RegexCheck):
        if re.search(check.pattern, reply):
            return Judgement(1.0)
        return Judgement(0.0, f"reply does not match the pattern {check.pattern!r}")
    if isinstance(check, JsonCheck):
        return _judge_json(check, example, reply)
    if isinstance(check, OneOfCheck):
        said = _label(reply)
        labels = check.labels if check.case_sensitive else tuple(label.casefold() for label in check.labels)
        if (said if check.case_sensitive else said.casefold()) in labels:
            return Judgement(1.0)
        return Judgement(0.0, f"reply is not one of: {', '.join(check.labels)}")
    if isinstance(check, SimilarityCheck):
        from rapidfuzz import fuzz

        score = max(fuzz.ratio(reply.strip(), ref.strip()) for ref in example.answers) / 100.0
        return Judgement(score) if score >= 1.0 else Judgement(score, f"reply is {score:.0%} similar to the reference")
    raise ValueError(f"unknown check {check!r}")  # pragma: no cover - the config admits only the checks above


_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.S | re.I)


def _label(reply: str) -> str:
    return re.sub(r"[.!;,]+$", "", reply.strip().strip("\"'`").strip()).strip("\"'`").strip()


def parse_json_reply(reply: str) -> Any:
    """The reply as JSON: the whole reply, else the first ```json fence. Raises json.JSONDecodeError."""
    text = reply.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        fenced = _FENCE.search(text)
        if fenced is None:
            raise
        return json.loads(fenced.group(1))


def _judge_json(check: JsonCheck, example: Example, reply: str) -> Judgement:
    try:
        value = parse_json_reply(reply)
    except json.JSONDecodeError as e:
        return Judgement(0.0, f"reply is not valid JSON: {e.msg} at line {e.lineno}")
    except (ValueError, RecursionError):
        return Judgement(0.0, "reply is not JSON Python can read (too deep or too large)")
    if check.schema_ is not None:
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(check.schema_)(
            check.schema_).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            return Judgement(0.0, f"reply does not match the schema{f' at {where}' if where else ''}: "
                                  f"{error_line(Exception(error.message))}")
    if not check.fields:
        return Judgement(1.0)
    try:
        reference = json.loads(example.answer)
    except json.JSONDecodeError as e:
        raise MetricError(f"the reference of example {example.id or '?'} is not JSON ({e.msg}), so fields "
                          f"cannot be compared") from None
    if not isinstance(reference, dict):
        raise MetricError(f"the reference of example {example.id or '?'} is not a JSON object")
    got = value if isinstance(value, dict) else {}
    wrong = [name for name in check.fields if got.get(name) != reference.get(name)]
    score = 1.0 - len(wrong) / len(check.fields)
    if not wrong:
        return Judgement(score)
    said = ", ".join(f"{name}: {_json_text(got.get(name))} instead of {_json_text(reference.get(name))}"
                     for name in wrong)
    return Judgement(score, f"wrong fields: {said}")


def _json_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."
