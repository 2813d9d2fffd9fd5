"""The LLM judge (`metric: {kind: judge, rubric, scale}`): the request it is sent, the tolerant reading of its
reply (garbage included), re-asking an unreadable reply and then counting a metric error, its reason in the
feedback request, the scripted judge of the fake endpoint, `plan`'s judge calls, and the judge_model role."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpo_ray.config import JudgeMetric, RunConfig, load_config, sampling_settings
from gpo_ray.core.evaluation import (
    Judge,
    MetricFailure,
    TaskModelParams,
    judge_params,
    score_example,
)
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task
from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import ChatMessage, ChatRequest
from gpo_ray.tasks.judge import (
    JUDGE_JSON_SCHEMA,
    JUDGE_READ_ATTEMPTS,
    JUDGE_SYSTEM,
    JudgeParams,
    JudgeUnreadable,
    judge_request,
    read_judgement,
)
from gpo_ray.tasks.metric_specs import MetricError
from gpo_ray.tasks.types import Example
from gpo_ray.testing import ScriptedLLM
from gpo_ray.testing.config import FakeLLMConfig
from tests.unit.test_core_loop import example_task
from tests.unit.test_metric_in_loop import RecordingServices, loop_settings

POLITE = JudgeMetric(kind="judge", rubric="The reply is polite and names the refund policy.", scale=(1, 5))
TICKET = Example(input="Where is my refund?", answers=("Refunds take 5 days.",), id="eval:0")


def test_the_judge_request_holds_rubric_input_reference_and_reply_and_asks_for_score_and_reason():
    request = judge_request(POLITE, TICKET, "Go away.", params=JudgeParams())
    system, user = request.messages
    assert system == ChatMessage("system", JUDGE_SYSTEM)
    assert user.content == (
        "Rubric:\nThe reply is polite and names the refund policy.\n\n"
        "Input:\nWhere is my refund?\n\n"
        "Reference answer:\nRefunds take 5 days.\n\n"
        "Reply to grade:\nGo away.\n\n"
        "Grade the reply by the rubric with an integer score from 1 (worst) to 5 (best). Answer in exactly two "
        "lines:\nScore: <integer>\nReason: <one or two sentences: what the reply gets wrong, or why it is good>")
    assert request.temperature == 0.0 and request.json_schema is None


def test_without_a_reference_there_is_no_reference_section_and_structured_output_asks_json():
    request = judge_request(POLITE, Example(input="Hi", answers=()), "Hello!",
                            params=JudgeParams(structured=True, max_tokens=64))
    text = request.messages[1].content
    assert "Reference" not in text and 'Answer with JSON: {"score": <integer>, "reason":' in text
    assert request.json_schema == JUDGE_JSON_SCHEMA and request.max_tokens == 64


def test_a_re_ask_is_its_own_cache_entry():
    first, again = (judge_request(POLITE, TICKET, "x", params=JudgeParams(), attempt=a) for a in (0, 1))
    assert first.cache_key("m") != again.cache_key("m")
    assert first.cache_key("m") == judge_request(POLITE, TICKET, "x", params=JudgeParams()).cache_key("m")


@pytest.mark.parametrize(("reply", "score", "reason"), [
    ('{"score": 4, "reason": "Polite, but no policy."}', 0.75, "Polite, but no policy."),
    ('```json\n{"Score": "2", "reasoning": "Rude."}\n```', 0.25, "Rude."),
    ("Score: 5\nReason: Polite and names the\n policy.", 1.0, "Polite and names the policy."),
    ("**Score:** 3/5\n**Reason:** Half way.", 0.5, "Half way."),
    ("1 - it insults the customer", 0.0, None),
    ("Score: 4", 0.75, None),
])
def test_the_judges_reply_is_read_tolerantly(reply: str, score: float, reason: str | None):
    said = read_judgement(reply, scale=(1, 5))
    assert (said.score, said.feedback) == (score, reason)


@pytest.mark.parametrize(("reply", "said"), [
    ("", "no score"),
    ("I cannot grade this.", "no score"),
    ("Score: 7\nReason: great", "outside its scale 1..5"),
    ('{"score": "high", "reason": "x"}', "not a number"),
    ('{"score": null}', "no score"),
    ("Score: 8/10", "scored out of 10"),
    ("\x00\x01{{{", "no score"),
])
def test_garbage_is_unreadable(reply: str, said: str):
    with pytest.raises(JudgeUnreadable, match=said):
        read_judgement(reply, scale=(1, 5))


def test_a_zero_to_ten_scale_normalises_to_the_unit_interval():
    metric = JudgeMetric(kind="judge", rubric="r", scale="0..10")
    assert metric.scale == (0, 10) and read_judgement("Score: 7", scale=metric.scale).score == 0.7


@pytest.mark.parametrize(("scale", "said"), [([5, 1], "low must be below high"), ("1-5", "'low..high'")])
def test_a_bad_scale_is_one_config_line(scale, said):
    with pytest.raises(ConfigError, match=said):
        load_config(overrides={"tasks": ["mine"], "task_sources": [
            {"name": "mine", "path": "x.jsonl", "format": "jsonl", "metric": {"kind": "judge", "rubric": "r",
                                                                              "scale": scale}}]})


async def test_the_scripted_judge_scores_by_the_reply_and_answers_json_when_asked():
    llm = ScriptedLLM(FakeLLMConfig(judge_phrases=["refund policy"]))
    good = await llm.complete(judge_request(POLITE, TICKET, "Our refund policy: 5 days.", params=JudgeParams()))
    bad = await llm.complete(judge_request(POLITE, TICKET, "Go away.", params=JudgeParams(structured=True)))
    assert read_judgement(good.text, scale=(1, 5)).score == 1.0
    assert json.loads(bad.text) == {"score": 1, "reason": "The reply does not say 'refund policy'."}
    assert llm.calls == {"judge": 2}


async def test_an_unreadable_judge_reply_is_asked_again_then_is_the_examples_metric_error():
    task_llm = ScriptedLLM(FakeLLMConfig(answer_key={"Where is my refund?": "Refunds take 5 days."}))
    judge_llm = ScriptedLLM(FakeLLMConfig(judge_replies="unreadable"))
    value = await score_example(task_llm, "Be nice.", TICKET, metric=POLITE, params=TaskModelParams(),
                                judge_with=Judge(judge_llm, JudgeParams()))
    assert isinstance(value, MetricFailure) and value.score == 0.0
    assert value.metric == "judge" and value.example_id == "eval:0"
    assert value.error.startswith(f"malformed judge reply ({JUDGE_READ_ATTEMPTS} tries): no score")
    assert judge_llm.calls == {"judge": JUDGE_READ_ATTEMPTS}


async def test_a_judge_metric_without_a_judge_is_a_programming_error():
    with pytest.raises(ValueError, match="judge model's client"):
        await score_example(ScriptedLLM(), "p", TICKET, metric=POLITE, params=TaskModelParams())
    with pytest.raises(TypeError):
        from gpo_ray.tasks.metric_specs import judge_reply

        judge_reply(POLITE, TICKET, "x")
    assert issubclass(JudgeUnreadable, ValueError) and not issubclass(JudgeUnreadable, MetricError)


def _judged_task():
    return replace(example_task(), metric=JudgeMetric(kind="judge", rubric="The reply gives the right number."))


async def test_the_judges_reason_reaches_the_feedback_request_beside_each_wrong_example():
    judge_llm = ScriptedLLM(FakeLLMConfig())
    services = RecordingServices()
    services.judge_with = Judge(judge_llm, JudgeParams())
    await GPOTaskLoop(_judged_task(), settings=loop_settings(direction="feedback"), services=services,
                      structured=False).run()
    (request, *_) = services.asked
    entries = request.split("<wrong_examples>")[1].split("</wrong_examples>")[0].split("\n\n")
    assert entries and all("\nWhat the metric found: The reply does not give the reference answer." in e
                           for e in entries)
    assert judge_llm.calls["judge"] > 0 and set(judge_llm.calls) == {"judge"}


def test_plan_counts_one_judge_call_per_scored_example_as_a_role_of_its_own():
    settings = loop_settings()
    plain = plan_task(example_task(), settings, optimizer_max_tokens=256, task_max_tokens=256)
    judged = plan_task(_judged_task(), settings, optimizer_max_tokens=256, task_max_tokens=256, judge_max_tokens=100)
    assert (plain.judge_calls, plain.judge_tokens) == (0, 0)
    assert judged.judge_calls == judged.task_model_calls == plain.task_model_calls
    request = judge_request(_judged_task().metric, example_task().eval[0], "x" * 1024, params=JudgeParams())
    assert judged.judge_tokens >= judged.judge_calls * (100 + request.prompt_chars // 4 - 5)
    feedback = plan_task(_judged_task(), loop_settings(direction="feedback"), optimizer_max_tokens=256,
                         task_max_tokens=256)
    assert feedback.judge_calls == feedback.task_model_calls > judged.judge_calls  # feedback scoring is judged too


def _config(**judge_model) -> RunConfig:
    source = {"name": "mine", "path": "x.jsonl", "format": "jsonl",
              "metric": {"kind": "judge", "rubric": "polite", "scale": [1, 5]}}
    return RunConfig(tasks=["mine"], task_sources=[source], **({"judge_model": judge_model} if judge_model else {}))


def test_the_judge_model_role_has_its_own_defaults_kept_when_an_endpoint_is_named():
    config = _config(base_url="http://judge:8000/v1", model="grader")
    assert (config.judge_model.temperature, config.judge_model.max_tokens) == (0.0, 200)
    assert sampling_settings(config)["judge_model"] == {"model": "grader", "temperature": 0.0, "max_tokens": 200}
    assert judge_params(config) == JudgeParams(temperature=0.0, max_tokens=200, structured=False)
    assert judge_params(_config()).structured  # the embedded judge uses structured output, as the optimizer does


def test_a_run_without_a_judge_keeps_its_fingerprint_and_sampling():
    plain = RunConfig(tasks=["example/arithmetic"])
    assert "judge_model" not in sampling_settings(plain)
    changed = RunConfig(tasks=["example/arithmetic"], judge_model={"base_url": "http://judge:8000/v1"})
    assert changed.fingerprint() == plain.fingerprint()
    assert _config(model="a").fingerprint() != _config(model="b").fingerprint()
    assert _config(model="a", read_timeout_s=5).fingerprint() == _config(model="a").fingerprint()


def test_the_role_and_its_usage_name():
    from gpo_ray.vocabulary import Role

    assert Role.JUDGE == "judge"
    request = ChatRequest(messages=(ChatMessage("system", JUDGE_SYSTEM),))
    assert request.messages[0].content.startswith("You are an impartial judge.")


def test_base_url_on_the_command_line_reaches_the_judge_too():
    from gpo_ray.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["plan", "--task", "x", "--base-url", "http://h:1/v1", "--model", "m"])
    assert overrides_from_args(args)["judge_model"] == {"base_url": "http://h:1/v1", "model": "m", "api_key_env": None,
                                                             "max_in_flight": None}


def test_the_variants_of_a_sweep_share_one_judge(tmp_path):
    from gpo_ray.grid import grid_from_dict

    source = {"name": "mine", "path": "x.jsonl", "format": "jsonl", "metric": {"kind": "judge", "rubric": "polite"}}
    grid = grid_from_dict({"base": {"tasks": ["mine"], "task_sources": [source]},
                           "variants": {"a": {}, "b": {"judge_model": {"temperature": 0.5}}}}, folder=tmp_path)
    with pytest.raises(ConfigError, match="judge_model differs from variant 'a'"):
        grid.sub_runs(tmp_path / "sweep")
