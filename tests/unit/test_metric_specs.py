"""A task's own metric as configuration (tasks/metric_specs.py): the spec as the config reads it, the score and the
feedback a user sees for each check and for a Python function, and what counts as a metric error."""

from __future__ import annotations

import json
import math

import pytest

from gpo_ray.config import ChecksMetric, PythonMetric, TaskSource, load_config
from gpo_ray.errors import ConfigError, InputError
from gpo_ray.tasks.loaders import load_generic_jsonl
from gpo_ray.tasks.metric_functions import load_metric_function, source_hash
from gpo_ray.tasks.metric_specs import (
    MetricError,
    example_fields,
    judge_reply,
    judgement_of,
)
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

EX = Example(input="Extract the customer.", answers=('{"name": "Ada", "plan": "pro"}',), id="eval:3")


def checks(*items: dict) -> ChecksMetric:
    return TaskSource.model_validate({"name": "t", "path": ".", "metric": {"kind": "checks", "checks": list(items)}}
                                     ).metric


def config_error(metric: object) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(overrides={"tasks": ["t"], "task_sources": [{"name": "t", "path": ".", "metric": metric}]})
    return str(e.value)


# --- the spec in a config -------------------------------------------------------------------------------------


def test_a_task_metric_is_a_built_in_kind_or_a_spec() -> None:
    assert TaskSource(name="t", path=".", metric="numeric").metric is MetricKind.NUMERIC
    assert TaskSource(name="t", path=".").metric is None
    spec = TaskSource.model_validate({"name": "t", "path": ".", "metric": {"kind": "python", "function": "a.b:c"}})
    assert spec.metric == PythonMetric(kind="python", function="a.b:c")
    both = checks({"check": "json", "schema": {"type": "object"}, "fields": ["name"]},
                  {"check": "contains", "text": "Ada", "weight": 2})
    assert [c.check for c in both.checks] == ["json", "contains"]
    dumped = TaskSource(name="t", path=".", metric=both).model_dump(mode="json")["metric"]
    assert dumped["checks"][0]["schema"] == {"type": "object"}  # config.json keeps the key as written


@pytest.mark.parametrize(("metric", "said"), [
    ("nope", "task_sources.0.metric.built_in: Input should be 'multiple_choice'"),
    ({"kind": "python", "function": "no_colon"}, "'no_colon' must be 'package.module:name'"),
    ({"kind": "checks", "checks": [{"check": "regex", "pattern": "("}]}, "not a valid regular expression"),
    ({"kind": "checks", "checks": [{"check": "json", "schema": {"type": "nah"}}]}, "not a valid JSON Schema"),
    ({"kind": "judge"}, "judge.rubric: Field required"),
    ({"kind": "judge", "rubric": "polite", "scale": [5, 1]}, "low must be below high"),
    ({"kind": "grader"}, "does not match any of the expected tags: 'python', 'checks', 'judge'"),
    ({"kind": "checks", "checks": []}, "at least 1 item"),
])
def test_a_bad_spec_is_one_config_line(metric: object, said: str) -> None:
    line = config_error(metric)
    assert said in line and "\n" not in line


# --- checks -----------------------------------------------------------------------------------------------------


def test_contains_and_regex() -> None:
    assert judge_reply(checks({"check": "contains", "text": "refund"}), EX, "Our REFUND policy").score == 1.0
    miss = judge_reply(checks({"check": "contains", "text": "refund", "case_sensitive": True}), EX, "REFUND")
    assert (miss.score, miss.feedback) == (0.0, "reply does not contain 'refund'")
    assert judge_reply(checks({"check": "regex", "pattern": r"\bSKU-\d+"}), EX, "item SKU-12").score == 1.0
    assert judge_reply(checks({"check": "regex", "pattern": r"^\d+$"}), EX, "x").feedback == \
        "reply does not match the pattern '^\\\\d+$'"


def test_json_parses_fenced_validates_and_compares_fields() -> None:
    plain = checks({"check": "json"})
    assert judge_reply(plain, EX, 'Here:\n```json\n{"a": 1}\n```').score == 1.0
    bad = judge_reply(plain, EX, "not json")
    assert (bad.score, bad.feedback) == (0.0, "reply is not valid JSON: Expecting value at line 1")
    schema = checks({"check": "json", "schema": {"type": "object", "required": ["name"],
                                                 "properties": {"name": {"type": "string"}}}})
    assert judge_reply(schema, EX, '{"name": "Ada"}').score == 1.0
    wrong = judge_reply(schema, EX, '{"name": 3}')
    assert wrong.score == 0.0 and wrong.feedback == "reply does not match the schema at name: 3 is not of type 'string'"
    fields = checks({"check": "json", "fields": ["name", "plan"]})
    half = judge_reply(fields, EX, '{"name": "Ada", "plan": "free"}')
    assert (half.score, half.feedback) == (0.5, 'wrong fields: plan: "free" instead of "pro"')
    assert judge_reply(fields, EX, '{"plan": "pro", "name": "Ada", "extra": 1}').score == 1.0
    with pytest.raises(MetricError, match="reference of example eval:9 is not JSON"):
        judge_reply(fields, Example(input="q", answers=("Ada",), id="eval:9"), '{"name": "Ada"}')


def test_one_of_similarity_and_weights() -> None:
    labels = checks({"check": "one_of", "labels": ["refund", "bug", "other"]})
    assert judge_reply(labels, EX, ' "Refund." ').score == 1.0
    assert judge_reply(labels, EX, "a refund").feedback == "reply is not one of: refund, bug, other"
    ref = Example(input="q", answers=("hello world",), id="eval:0")
    similar = judge_reply(checks({"check": "similarity"}), ref, "hello word")
    assert similar.score == pytest.approx(0.952, abs=1e-3) and similar.feedback == "reply is 95% similar to the reference"
    assert judge_reply(checks({"check": "similarity"}), ref, " hello world ").feedback is None
    mixed = checks({"check": "contains", "text": "hello", "weight": 3}, {"check": "regex", "pattern": "!$"})
    verdict = judge_reply(mixed, ref, "hello there")
    assert verdict.score == 0.75 and verdict.feedback == "reply does not match the pattern '!$'"


# --- a Python function --------------------------------------------------------------------------------------------


def test_a_python_metric_gets_the_example_fields_and_may_give_feedback() -> None:
    spec = PythonMetric(kind="python", function="tests.metric_functions:exact_number")
    function = load_metric_function(spec.function)
    ex = Example(input="2+3?", answers=("5",), id="eval:0", fields={"difficulty": "easy"})
    assert example_fields(ex) == {"difficulty": "easy", "id": "eval:0", "input": "2+3?", "answer": "5",
                                  "answers": ["5"]}
    assert judge_reply(spec, ex, "The sum is 5.", function=function).score == 1.0
    wrong = judge_reply(spec, ex, "It is 6", function=function)
    assert (wrong.score, wrong.feedback) == (0.0, "the last word should be the sum 5, not 6")


@pytest.mark.parametrize(("value", "score", "feedback"), [
    (True, 1.0, None), (False, 0.0, None), (1, 1.0, None), (0.25, 0.25, None), ((0.5, "half"), 0.5, "half"),
    ((1.0, None), 1.0, None), ((0.0, ""), 0.0, None),
])
def test_what_a_python_metric_may_return(value: object, score: float, feedback: str | None) -> None:
    verdict = judgement_of(value)
    assert (verdict.score, verdict.feedback) == (score, feedback)


@pytest.mark.parametrize(("value", "said"), [
    (1.5, "returned the score 1.5, outside [0, 1]"), (-0.1, "outside [0, 1]"), (math.nan, "returned the score nan"),
    ("1", "returned str '1'; expected a score in [0, 1] or (score, feedback text)"), (None, "returned NoneType"),
    ((0.5, 3), "returned tuple"), ((1, "a", "b"), "returned tuple"),
])
def test_a_python_metric_returning_no_score_is_an_error_never_a_clamp(value: object, said: str) -> None:
    with pytest.raises(MetricError, match=None) as e:
        judgement_of(value)
    assert said in str(e.value)


def test_a_python_metric_that_raises_is_an_error_with_its_first_line() -> None:
    spec = PythonMetric(kind="python", function="tests.metric_functions:fails_when_flagged")
    with pytest.raises(MetricError) as e:
        judge_reply(spec, EX, "x", function=lambda example, reply: {}["missing"])
    assert str(e.value) == "KeyError: 'missing'"


def test_a_function_that_cannot_be_imported_is_one_input_line() -> None:
    for function, said in [
        ("no_such_pkg.metrics:score", "cannot be imported: ModuleNotFoundError: No module named 'no_such_pkg'"),
        ("tests.metric_functions:nope", "cannot be imported: module 'tests.metric_functions' has no 'nope'"),
        ("tests.metric_functions:Path", None),
    ]:
        if said is None:
            load_metric_function(function)  # any callable will do
            continue
        with pytest.raises(InputError) as e:
            load_metric_function(function, task="tickets")
        assert str(e.value) == f"metric function {function!r} of task 'tickets' {said}"
    assert len(source_hash("tests.metric_functions:exact_number")) == 16


# --- data: the other columns reach the metric ----------------------------------------------------------------------


def test_jsonl_columns_beyond_input_and_answer_reach_the_example(tmp_path) -> None:
    for split in ("train", "eval", "test"):
        (tmp_path / f"{split}.jsonl").write_text(
            json.dumps({"ticket": "Refund please", "label": "refund", "lang": "en"}) + "\n"
            + json.dumps({"ticket": "Crash", "label": "bug"}) + "\n", encoding="utf-8")
    source = TaskSource.model_validate({"name": "tickets", "format": "jsonl", "path": str(tmp_path),
                                        "input_field": "ticket", "answer_field": "label",
                                        "metric": {"kind": "checks", "checks": [{"check": "one_of",
                                                                                 "labels": ["refund", "bug"]}]}})
    task = load_generic_jsonl(source)
    assert isinstance(task.metric, ChecksMetric)
    assert example_fields(task.eval[0]) == {"ticket": "Refund please", "label": "refund", "lang": "en", "id": "eval:0",
                                            "input": "Refund please", "answer": "refund", "answers": ["refund"]}
    assert example_fields(task.eval[1])["label"] == "bug" and task.eval[0] == Example("Refund please", ("refund",),
                                                                                       "eval:0")


# --- the metric in the run's fingerprint ----------------------------------------------------------------------------


def _config_scored_by(function: str, tmp_path):
    from gpo_ray.config import RunConfig

    return RunConfig.model_validate({"tasks": ["t"], "task_sources": [
        {"name": "t", "format": "jsonl", "path": str(tmp_path), "metric": {"kind": "python", "function": function}}]})


def test_the_metric_and_its_source_are_in_the_fingerprint(tmp_path, monkeypatch) -> None:
    from gpo_ray.tasks.metric_functions import check_metric_hashes, with_metric_hashes

    (tmp_path / "my_metric.py").write_text("def score(example, reply):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    started = with_metric_hashes(_config_scored_by("my_metric:score", tmp_path))
    assert started.task_sources[0].metric.source_hash == source_hash("my_metric:score")
    assert started.fingerprint() != _config_scored_by("my_metric:score", tmp_path).fingerprint()
    assert started.fingerprint() != with_metric_hashes(_config_scored_by("tests.metric_functions:half_right",
                                                                         tmp_path)).fingerprint()
    check_metric_hashes(started)  # unchanged: resumes
    (tmp_path / "my_metric.py").write_text("def score(example, reply):\n    return 0.0\n")
    with pytest.raises(InputError) as e:
        check_metric_hashes(started)
    assert str(e.value).startswith(
        f"metric function 'my_metric:score' of task 't' changed since the run started (source hash "
        f"{started.task_sources[0].metric.source_hash}, now ")
    assert str(e.value).endswith("resuming would mix two metrics in one trajectory; put the function back as it "
                                 "was, or start a new run")


def test_a_built_in_metric_keeps_the_fingerprint_of_earlier_runs(tmp_path) -> None:
    from gpo_ray.config import RunConfig
    from gpo_ray.tasks.metric_functions import with_metric_hashes

    config = RunConfig.model_validate({"tasks": ["t"], "task_sources": [
        {"name": "t", "format": "jsonl", "path": str(tmp_path), "metric": "numeric"}]})
    assert with_metric_hashes(config) is config
    assert config.public_dict()["task_sources"][0]["metric"] == "numeric"


# --- a metric file given by path ----------------------------------------------------------------------------------


def test_a_metric_file_beside_the_config_is_found_from_the_config_and_imported_by_path(tmp_path) -> None:
    from gpo_ray.tasks.metric_functions import metric_files

    (tmp_path / "json.py").write_text("def score(example, reply):\n    return 0.25, 'from the file'\n")
    (tmp_path / "run.yaml").write_text(
        "tasks: [t]\n"
        "task_sources: [{name: t, format: jsonl, path: data, metric: {kind: python, function: 'json.py:score'}}]\n")
    config = load_config(tmp_path / "run.yaml")
    metric = config.task_sources[0].metric
    assert metric.function == f"{tmp_path / 'json.py'}:score"
    assert metric_files(config) == [str(tmp_path / "json.py")]
    function = load_metric_function(metric.function)
    assert judge_reply(metric, EX, "x", function=function) == judge_reply(metric, EX, "x", function=function)
    assert function({}, "x") == (0.25, "from the file")
    assert json.dumps({"a": 1}) == '{"a": 1}'  # the standard library's json is still json
    assert len(source_hash(metric.function)) == 16
    with pytest.raises(InputError, match=r"cannot be imported: FileNotFoundError: no such file: .*gone\.py$"):
        load_metric_function(f"{tmp_path / 'gone.py'}:score")
    assert "the file's name a Python identifier" in config_error({"kind": "python", "function": "my-metric.py:score"})
