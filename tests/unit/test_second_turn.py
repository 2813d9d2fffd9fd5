"""The paper's answer extraction (answer_extraction: second_turn): the exact messages sent, usage and plan counts."""

from __future__ import annotations

import asyncio
import json

import pytest

from gpo_ray.cli import main
from gpo_ray.config import OptimizerSettings, RunConfig
from gpo_ray.core.evaluation import (
    TaskModelParams,
    score_example,
    score_examples,
    task_model_params,
)
from gpo_ray.core.plan import plan_task
from gpo_ray.llm.accounting import AccountingClient, UsageCounters
from gpo_ray.llm.protocol import ChatMessage, ChatRequest, ChatResponse
from gpo_ray.tasks import second_turn as st
from gpo_ray.tasks.types import Example, Task
from gpo_ray.vocabulary import MetricKind, PromptPlacement

MC, EXACT, NUM, ROUGE = MetricKind.MULTIPLE_CHOICE, MetricKind.EXACT_MATCH, MetricKind.NUMERIC, MetricKind.ROUGE_L
SECOND = TaskModelParams(answer_extraction="second_turn", max_tokens=256, temperature=0.0, seed=0)


class Recorder:
    """Answers with the next scripted reply and records every request."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(self.replies[(len(self.requests) - 1) % len(self.replies)])


MOVIES = "Find a movie similar to Batman:\nOptions:\n(A) The Front Page\n(B) Maelstrom\n(C) The Lion King"


# --- the sentence per task type, verbatim from the official eval_utils.py -------------------------------------


@pytest.mark.parametrize(
    ("task", "metric", "question", "expected"),
    [
        ("bbh/boolean_expressions", EXACT, "not ( True ) and ( True ) is",
         'Directly tell me your answer using only "True" or "False".'),
        ("bbh/navigate", EXACT, "Take 3 steps.", 'Directly tell me your answer using only "Yes" or "No".'),
        ("bbh/causal_judgement", EXACT, "q", 'Directly tell me your answer using only "Yes" or "No".'),
        ("bbh/sports_understanding", EXACT, "q", 'Directly tell me your answer using only "Yes" or "No".'),
        ("bbh/web_of_lies", EXACT, "q", 'Directly tell me your answer using only "Yes" or "No".'),
        ("bbh/formal_fallacies", EXACT, "q", 'Directly tell me your answer using only "valid" or "invalid".'),
        ("bbh/movie_recommendation", MC, MOVIES, "Therefore, summarize your answer with an option among (A) and (C)."),
        ("bbh/date_understanding", MC, "When?\nOptions:\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n(E) 5\n(F) 6",
         "Therefore, summarize your answer with an option among (A) and (F)."),
        ("bbh/multistep_arithmetic_two", NUM, "((1 + 2) * 3) =",
         "Therefore, summarize your final answer with just one number in your response."),
        ("bbh/object_counting", NUM, "q", "Therefore, summarize your final answer with just one number in your response."),
        ("bbh/dyck_languages", EXACT, "q",
         "Directly output the newly added parentheses that make the parentheses close correctly."),
        ("bbh/word_sorting", EXACT, "q", ("Directly output the result of sorting the words alphabetically, "
                                          "separating each word with a space.")),
        ("mmlu/anatomy", MC, "q\n(A) a\n(B) b\n(C) c\n(D) d",
         "Therefore, summarize your answer with an option among (A) and (D)."),
        ("wsc", MC, "q\n(A) a\n(B) b", "Therefore, summarize your answer with an option between (A) and (B)."),
        ("gsm8k", NUM, "q", "Therefore, summarize your final answer with just one number in your response."),
        ("webnlg", ROUGE, "q", None),
        # tasks the official code does not know: by metric kind
        ("example/arithmetic", NUM, "1+1", "Therefore, summarize your final answer with just one number in your response."),
        ("mine/choice", MC, "q\n(A) x\n(B) y", "Therefore, summarize your answer with an option among (A) and (B)."),
        ("mine/free", EXACT, "q", None),
    ],
)
def test_second_turn_text_per_task_type(task, metric, question, expected):
    assert st.second_turn_text(task, metric, question) == expected


def test_end_choice_is_the_first_bracket_of_the_last_line_or_the_line_itself():
    assert st.end_choice(MOVIES) == "(C)"
    assert st.end_choice("q\n(A) 1 (or (B))") == "(A)"
    assert st.end_choice("q\nno options here") == "no options here"  # the official quirk, kept


# --- the messages sent ---------------------------------------------------------------------------------------


def test_second_turn_sends_first_turn_reply_and_question_then_scores_the_second_reply():
    llm = Recorder("Let me think. Batman and The Lion King are 90s hits, so C fits.", "  (C)\n")
    example = Example(MOVIES, ("(C)",))
    value = asyncio.run(score_example(llm, "Let's think step by step.", example, metric=MC, params=SECOND,
                                      task="bbh/movie_recommendation"))
    assert value == 1.0
    first, second = llm.requests
    question_turn = ChatMessage("user", f"{MOVIES}\nLet's think step by step.")
    assert first.messages == (question_turn,)
    assert first.max_tokens == 256
    assert second.messages == (
        question_turn,
        ChatMessage("assistant", "Let me think. Batman and The Lion King are 90s hits, so C fits."),
        ChatMessage("user", "Therefore, summarize your answer with an option among (A) and (C)."),
    )
    assert second.max_tokens == 100 and second.temperature == 0.0 and second.seed == 0


def test_the_second_reply_decides_not_the_first():
    llm = Recorder("The answer is (A).", "(B)")
    example = Example(MOVIES, ("(B)",))
    assert asyncio.run(score_example(llm, "p", example, metric=MC, params=SECOND, task="bbh/movie_recommendation")) == 1.0
    single = Recorder("The answer is (A).", "(B)")
    assert asyncio.run(score_example(single, "p", example, metric=MC, params=TaskModelParams(),
                                     task="bbh/movie_recommendation")) == 0.0
    assert len(single.requests) == 1


def test_second_turn_keeps_the_system_placement_and_yes_no_sentence():
    llm = Recorder("I walk 3 steps forward and 3 back.", "Yes")
    params = TaskModelParams(answer_extraction="second_turn", placement=PromptPlacement.SYSTEM)
    value = asyncio.run(score_example(llm, "Be careful.", Example("Take 3 steps. Take 3 back.", ("Yes",)),
                                      metric=EXACT, params=params, task="bbh/navigate"))
    assert value == 1.0
    assert [m.role for m in llm.requests[1].messages] == ["system", "user", "assistant", "user"]
    assert llm.requests[1].messages[-1].content == 'Directly tell me your answer using only "Yes" or "No".'


def test_a_task_without_a_second_turn_gets_one_call():
    llm = Recorder("The cat sat on the mat")
    value = asyncio.run(score_example(llm, "p", Example("triples", ("The cat sat on the mat",)), metric=ROUGE,
                                      params=SECOND, task="webnlg"))
    assert value == pytest.approx(1.0) and len(llm.requests) == 1


def test_normalisation_strips_the_second_reply():
    assert st.answer_for_parsing("  \n 42 \n") == "42"
    llm = Recorder("6 * 7 is 42", "\n  42  \n")
    assert asyncio.run(score_example(llm, "p", Example("6*7?", ("42",)), metric=NUM, params=SECOND,
                                     task="gsm8k")) == 1.0


# --- usage: second turns are task-model calls -------------------------------------------------------------------


def test_usage_counts_each_second_turn_as_a_call():
    counters = UsageCounters()
    llm = AccountingClient(Recorder("thinking", "42"), counters=counters)
    examples = [Example(f"{i}*1?", (str(i),)) for i in range(3)]
    asyncio.run(score_examples(llm, "p", examples, metric=NUM, params=SECOND, task="gsm8k"))
    assert counters.snapshot()["calls"] == 6


# --- plan ------------------------------------------------------------------------------------------------------


def example_task(name: str, metric: MetricKind) -> Task:
    ex = tuple(Example(f"q{i}\n(A) x\n(B) y", ("(A)",)) for i in range(10))
    return Task(name=name, metric=metric, train=ex[:8], eval=ex[:6], test=ex[:4])


def test_plan_doubles_task_model_calls_with_second_turns():
    single = OptimizerSettings(epochs=1, batch_size=4, candidates=2)
    second = single.model_copy(update={"answer_extraction": "second_turn"})
    task = example_task("bbh/snarks", MC)
    a = plan_task(task, single, optimizer_max_tokens=64, task_max_tokens=64)
    b = plan_task(task, second, optimizer_max_tokens=64, task_max_tokens=64)
    scored = 6 + 2 * (2 * 4 + 6) + 2 * 4  # eval baseline, 2 steps of (2 candidates x 4 + eval), test twice
    assert a.task_model_calls == scored and a.second_turn_calls == 0
    assert b.task_model_calls == 2 * scored and b.second_turn_calls == scored
    assert b.task_model_tokens > a.task_model_tokens
    assert b.optimizer_calls == a.optimizer_calls
    webnlg = plan_task(example_task("webnlg", ROUGE), second, optimizer_max_tokens=64, task_max_tokens=64)
    assert webnlg.second_turn_calls == 0


def test_plan_cli_shows_second_turns(capsys):
    args = ["plan", "--task", "example/arithmetic", "--epochs", "3", "--batch-size", "4", "--json"]
    assert main(args) == 0
    single = json.loads(capsys.readouterr().out)["tasks"]["example/arithmetic"]
    assert single["second_turn_calls"] == 0
    assert main([*args, "--answer-extraction", "second_turn"]) == 0
    doc = json.loads(capsys.readouterr().out)
    second = doc["tasks"]["example/arithmetic"]
    assert second["second_turn_calls"] == single["task_model_calls"]
    assert second["task_model_calls"] == 2 * single["task_model_calls"]
    assert doc["total"]["second_turn_calls"] == second["second_turn_calls"]
    assert main(["plan", "--task", "example/arithmetic", "--answer-extraction", "second_turn"]) == 0
    assert "second turns" in capsys.readouterr().out


# --- config ---------------------------------------------------------------------------------------------------


def test_config_keys_reach_the_task_model_params():
    config = RunConfig(tasks=["x"], optimizer={"answer_extraction": "second_turn", "metric_variants": {"rouge_l": "paper"}})
    params = task_model_params(config)
    assert params.answer_extraction == "second_turn"
    assert params.variant_for(ROUGE) == "paper" and params.variant_for(MC) == "default"
    assert task_model_params(RunConfig(tasks=["x"])).answer_extraction == "single"


@pytest.mark.parametrize("bad", [{"answer_extraction": "twice"}, {"metric_variants": {"rouge_l": "best"}},
                                 {"metric_variants": {"bleu": "paper"}}])
def test_config_rejects_unknown_values(bad):
    with pytest.raises(ValueError):
        OptimizerSettings(**bad)


def test_defaults_keep_the_fingerprint():
    base = RunConfig(tasks=["x"])
    assert base.fingerprint() == RunConfig(tasks=["x"], optimizer={"answer_extraction": "single"}).fingerprint()
    assert base.fingerprint() != RunConfig(tasks=["x"], optimizer={"answer_extraction": "second_turn"}).fingerprint()


# --- report ---------------------------------------------------------------------------------------------------


def test_report_says_task_model_calls_include_second_turns(tmp_path):
    from gpo_ray.report.run_view import RunView
    from gpo_ray.report.tables import run_facts, usage_rows

    usage = {"optimizer": {"calls": 8}, "task_model": {"calls": 96}}
    run = RunView(path=tmp_path, fingerprint="f", status="completed", tasks={}, usage=usage,
                  config={"optimizer": {"answer_extraction": "second_turn", "metric_variants": {"rouge_l": "paper"}}})
    rows = usage_rows(run)
    assert ["task_model (incl. second turns)", "96"] == rows[1][:2]
    assert ("scoring", "answer extraction second_turn; metric variants: rouge_l paper") in run_facts(run)
    plain = RunView(path=tmp_path, fingerprint="f", status="completed", tasks={}, usage=usage, config={"optimizer": {}})
    assert usage_rows(plain)[1][0] == "task_model"


def test_second_turn_with_paper_metrics_scores_the_second_reply_by_the_official_rules():
    params = TaskModelParams(answer_extraction="second_turn", metric_variants=(("exact_match", "paper"),))
    example = Example("Take 3 steps. Take 3 back.", ("Yes",))
    strict = Recorder("You end where you started.", "Yes, you do.")  # official: the whole reply must be the label
    assert asyncio.run(score_example(strict, "p", example, metric=EXACT, params=params, task="bbh/navigate")) == 0.0
    plain = Recorder("You end where you started.", " Yes. ")
    assert asyncio.run(score_example(plain, "p", example, metric=EXACT, params=params, task="bbh/navigate")) == 1.0


# --- the whole loop in-process: the run's task-model calls against plan ------------------------------------------


async def test_loop_with_second_turns_makes_twice_the_task_calls_and_stays_within_the_plan():
    from gpo_ray.core.loop import GPOTaskLoop
    from gpo_ray.core.reference import InProcessServices
    from gpo_ray.testing import ScriptedLLM
    from tests.unit.test_core_adaptive import (
        bag_of_words,
        loop_settings,
        example_task,
        optimizer_config,
        task_model_config,
    )

    async def run(params: TaskModelParams, settings: OptimizerSettings):
        task_llm = Recording(ScriptedLLM(task_model_config()))
        services = InProcessServices(optimizer_llm=ScriptedLLM(optimizer_config()), task_llm=task_llm, embed=bag_of_words,
                                     task_params=params)
        result = await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run()
        return result, task_llm.requests

    single_settings = loop_settings()
    second_settings = loop_settings(answer_extraction="second_turn")
    result, second = await run(TaskModelParams(answer_extraction="second_turn"), second_settings)
    asked_again = [r for r in second if r.messages[-1].content == st.NUMBER]
    assert len(second) == 2 * len(asked_again)
    assert all(len(r.messages) == 3 and r.messages[1].role == "assistant" for r in asked_again)
    task = example_task()
    n_eval, n_test = len(task.eval), len(task.test)
    test_calls = n_test * (1 if result.best_prompt == result.initial_prompt else 2)
    assert len(asked_again) == n_eval + sum(len(s.candidates) * n_eval for s in result.steps) + test_calls
    plan = plan_task(task, second_settings, optimizer_max_tokens=64, task_max_tokens=64)
    assert len(second) <= plan.task_model_calls
    assert plan.task_model_calls == 2 * plan_task(task, single_settings, optimizer_max_tokens=64,
                                                  task_max_tokens=64).task_model_calls


class Recording:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return await self.inner.complete(request)
