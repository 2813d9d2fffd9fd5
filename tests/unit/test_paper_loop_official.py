"""`preset: paper` end to end (issue 23): each key that makes gpo-ray's loop do what the official GPO loop does,
checked against the official functions' own output (tests/unit/fixtures/paper_loop_official.json; its "note" says
how it was made): the format exemplars' draw, candidate extraction, the step's ranking and choice, the second
turn's last option; and the trace scoring that draws the official curves, counted by `plan`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gpo_ray.config import PRESETS, OptimizerSettings, RunConfig, load_config
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.extraction import extract_candidate, extract_paper_candidate
from gpo_ray.core.generation import GenerationRequest, generate_candidates
from gpo_ray.core.loop import GPOTaskLoop, format_examples_for
from gpo_ray.core.paper_draws import official_format_indices, official_train_batch
from gpo_ray.core.plan import plan_task
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.selection import paper_new_order, paper_ranking, paper_select
from gpo_ray.llm.protocol import ChatRequest, ChatResponse
from gpo_ray.tasks.placement import build_task_messages
from gpo_ray.tasks.second_turn import paper_end_choice, second_turn_text
from gpo_ray.tasks.types import Example, Task
from gpo_ray.testing import ScriptedLLM
from gpo_ray.vocabulary import MetricKind, PromptPlacement
from tests.unit.test_core_loop import example_task, optimizer_config, task_model_config

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "paper_loop_official.json").read_text(encoding="utf-8"))


def _ex(i: int) -> Example:
    return Example(input=f"q{i}", answers=(f"a{i}",), id=str(i))


def _sized(name: str, train: int, eval_: int, test: int, fmt: int) -> Task:
    return Task(name=name, metric=MetricKind.EXACT_MATCH, train=tuple(map(_ex, range(train))),
                eval=tuple(map(_ex, range(eval_))), test=tuple(map(_ex, range(test))),
                format_examples=tuple(map(_ex, range(fmt))))


# --- format exemplars ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["navigate", "date_understanding"])
def test_format_exemplars_are_the_official_draw_for_the_task_run_alone(task):
    official = FIXTURE["format_exemplars"][task]
    sizes = tuple(official["sizes"])
    assert official_format_indices([sizes], 3) == [official["format_index"]]
    t = _sized(f"bbh/{task}", *sizes)
    picked = format_examples_for(t, OptimizerSettings(format_example_sampling="paper"))
    assert [t.format_examples.index(e) for e in picked] == official["format_index"] == [2, 3, 4]
    # the limits do not change the draw: the official code has none, it permutes the full splits
    limited = OptimizerSettings(format_example_sampling="paper", train_limit=8, eval_limit=8, test_limit=8)
    assert format_examples_for(t, limited) == picked


def test_a_run_over_several_tasks_draws_after_the_earlier_tasks():
    official = FIXTURE["format_exemplars"]["list:navigate,date_understanding"]
    sizes = [tuple(official[t]["sizes"]) for t in ("navigate", "date_understanding")]
    assert official_format_indices(sizes, 3) == [official["navigate"]["format_index"],
                                                 official["date_understanding"]["format_index"]]


def test_the_official_training_batches_are_file_order_slices():
    assert all(FIXTURE["format_exemplars"][t]["train_index_is_file_order"] for t in ("navigate", "date_understanding"))
    train = list(range(20))  # 20 / 8: 2 full batches + 4 (half a batch: a third step)
    assert [official_train_batch(train, t, batch_size=8) for t in (1, 2, 3, 4)] == [
        tuple(range(8)), tuple(range(8, 16)), tuple(range(16, 20)), tuple(range(8))]


# --- extraction ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", FIXTURE["extraction"], ids=lambda c: c["reply"][:30])
def test_paper_extraction_equals_extract_text_and_polish_sentence(case):
    assert extract_paper_candidate(case["reply"]) == case["official"]


def test_the_own_extraction_differs_on_most_of_the_crafted_replies():
    differ = [c for c in FIXTURE["extraction"] if extract_candidate(c["reply"], structured=False)[0] != c["official"]]
    assert len(differ) >= 11  # why the preset needs its own key


class Replies:
    def __init__(self, replies):
        self.replies = replies

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(self.replies[request.sample_index])


async def test_paper_generation_keeps_empty_and_exact_duplicates_apart():
    replies = ["<START><END>", "<START>Be brief.<END>", "<START>be brief.<END>", "<START>Be brief.<END>",
               "<START>**Be brief.**<END>"]
    request = GenerationRequest(task="t", step=1, current_prompt="Let's think step by step.", retrieved=(),
                                format_examples=(), edit_budget=10, n=len(replies), tried=(),
                                placement=PromptPlacement.END, structured=False, extraction="paper")
    result = await generate_candidates(Replies(replies), request)
    assert result.candidates == ("", "Be brief.")  # "be brief." becomes "Be brief."; "**" removed
    assert result.counts["duplicate"] == 3
    own = await generate_candidates(Replies(replies), replace(request, extraction="own"))
    assert own.candidates == ("Be brief.",)


# --- ranking and choice -------------------------------------------------------------------------------------------

def _case_inputs(case):
    generated, seen = [], set()
    for p in case["generated"]:  # one entry per exact text, as the generation gate admits them
        if p not in seen:
            seen.add(p)
            generated.append(p)
    before = set(case["generated_before"])
    repeated = [(p, case["score_dict"][p]) for p in generated if p in before]
    new = [(p, case["new_scores"][p]) for p in case["official"]["new_order"]]
    assert sorted(p for p, _ in new) == sorted(p for p in generated if p not in before)
    chosen_before = [v for k, v in case["step2max_instruction"].items() if int(k) >= 0]
    return repeated, new, chosen_before


@pytest.mark.parametrize("case", FIXTURE["ranking"], ids=lambda c: c["name"])
def test_paper_ranking_and_choice_equal_the_official_lines(case):
    repeated, new, chosen_before = _case_inputs(case)
    ranking = paper_ranking(case["current"], repeated, new)
    assert [[p, s] for p, s in ranking] == case["official"]["ranking"]
    assert paper_select(ranking, chosen_before=chosen_before) == (case["official"]["chosen"],
                                                                  case["official"]["chosen_score"])


def test_new_candidates_order_is_seeded_or_generated():
    new = [f"P{i}." for i in range(8)]
    seeded = paper_new_order(new, order="seeded", seed=0, task="t", step=3)
    assert sorted(seeded) == new and seeded != new
    assert seeded == paper_new_order(new, order="seeded", seed=0, task="t", step=3)
    assert seeded != paper_new_order(new, order="seeded", seed=0, task="t", step=4)
    assert paper_new_order(new, order="generated", seed=0, task="t", step=3) == new


class FixedScores:
    """A task model that answers right only for prompts in `right` (exact match on the example answers)."""

    def __init__(self, right: set[str]):
        self.right = right
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        text = request.messages[-1].content
        question, _, prompt = text.partition("\n")
        return ChatResponse("a" + question[1:] if prompt in self.right else "wrong")


def _paper(**kw) -> OptimizerSettings:
    preset = dict(PRESETS["paper"]["optimizer"])
    preset.update({"epochs": 1, "batch_size": 4, "answer_extraction": "single", "metric_variants": {},
                   "retrieval": "recency", **kw})
    return OptimizerSettings(**preset)


async def test_the_loop_stays_on_the_initial_prompt_at_0_when_every_candidate_scores_0():
    task = _sized("t/x", 8, 6, 4, 5)
    settings = _paper(candidates=3)
    optimizer = Replies(["<START>A.<END>", "<START>B.<END>", "<START>C.<END>"])
    services = InProcessServices(optimizer_llm=optimizer, task_llm=FixedScores({"Let's think step by step."}),
                                 embed=None, task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    first, second = result.steps
    assert result.initial_eval_score == 1.0
    assert (first.prompt, first.eval_score) == ("Let's think step by step.", 0.0)  # the official quirk
    # step 2: the three are repeated (earlier score 0) and rank after the current prompt, which step 1 chose: the
    # first free one is A.
    assert (second.prompt, second.eval_score) == ("A.", 0.0)
    assert second.counts["reused_score"] == 3 and second.counts["scoring_calls"] == 0


async def test_the_loop_can_move_back_to_the_initial_prompt_when_it_is_proposed():
    task = _sized("t/x", 8, 6, 4, 5)
    settings = _paper(candidates=2)
    optimizer = Replies(["<START>A.<END>", "<START>let's think step by step.<END>"])
    services = InProcessServices(optimizer_llm=optimizer, task_llm=FixedScores({"A.", "Let's think step by step."}),
                                 embed=None, task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    first, second = result.steps
    # step 1: the initial prompt, proposed again, is scored again and keeps the first place of the ranking
    assert (first.prompt, first.eval_score) == ("Let's think step by step.", 1.0)
    assert first.counts["scoring_calls"] == 2 * 6
    # step 2: A. was generated before (repeated, 1.0) and never chosen: the ranking's first free prompt
    assert (second.prompt, second.eval_score) == ("A.", 1.0)


# --- second turn ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", FIXTURE["end_choice"], ids=lambda c: f"{c['instruction_pos']}:{c['prompt'][:12]}")
def test_paper_end_choice_reads_the_official_line(case):
    placement = PromptPlacement.END if case["instruction_pos"] == "Q_end" else PromptPlacement.BEGINNING
    (message,) = build_task_messages(case["prompt"], case["question"], placement=placement)
    if case["prompt"].strip() or placement is PromptPlacement.END:  # the official first turn, as gpo-ray sends it
        assert paper_end_choice(message.content, placement_end=placement is PromptPlacement.END) == case["official"]
    text = second_turn_text("bbh/date_understanding", MetricKind.MULTIPLE_CHOICE, case["question"],
                            choice=case["official"])
    assert text == f"Therefore, summarize your answer with an option among (A) and {case['official']}."


# --- trace scoring ------------------------------------------------------------------------------------------------

async def test_trace_scores_are_recorded_per_step_and_counted_by_plan():
    task = example_task()
    settings = _paper(candidates=3, trace_scores=True)
    counting = ScriptedLLM(task_model_config())
    calls = 0

    class Counting:
        async def complete(self, request):
            nonlocal calls
            calls += 1
            return await counting.complete(request)

    services = InProcessServices(optimizer_llm=ScriptedLLM(optimizer_config()), task_llm=Counting(), embed=None,
                                 task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    assert all(s.train_score is not None and s.test_score is not None for s in result.steps)
    assert result.steps[result.best_step - 1].test_score == result.best_test_score if result.best_step else True
    d = result.to_dict()
    assert {"train_score", "test_score"} <= set(d["steps"][0])
    plan = plan_task(task, settings, optimizer_max_tokens=512, task_max_tokens=256)
    # plan counts every candidate new; a repeated or duplicate one is not scored (the scripted optimizer repeats)
    not_scored = plan.steps * settings.candidates * len(task.eval) - sum(s.counts["scoring_calls"] for s in result.steps)
    assert calls == plan.task_model_calls - not_scored
    steps = plan.steps
    assert plan.trace_scoring_calls == sum(len(official_train_batch(task.train, t, batch_size=4))
                                           for t in range(1, steps + 1)) + (steps + 1) * len(task.test)
    assert sum(s.counts["trace_scoring_calls"] for s in result.steps) == plan.trace_scoring_calls - len(task.test)


# --- config -------------------------------------------------------------------------------------------------------

def test_the_keys_default_to_the_own_behaviour_and_leave_old_fingerprints_alone():
    o = OptimizerSettings()
    assert (o.candidate_extraction, o.selection, o.new_candidate_order, o.trace_scores, o.end_choice) == (
        "own", "own", "seeded", False, "question")
    before = RunConfig(tasks=["t"]).fingerprint()
    assert before == RunConfig.model_validate({"tasks": ["t"], "optimizer": {"selection": "own"}}).fingerprint()
    c = load_config(overrides={"tasks": ["t"], "preset": "paper"}).optimizer
    assert (c.format_example_sampling, c.candidate_extraction, c.selection, c.trace_scores, c.end_choice) == (
        "paper", "paper", "paper", True, "paper")


def test_paper_selection_needs_eval_scores():
    from gpo_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="selection paper"):
        load_config(overrides={"tasks": ["t"], "optimizer": {"selection": "paper", "candidate_scoring": "eval"}})


async def test_the_second_turn_names_the_option_on_the_official_line():
    from gpo_ray.core.evaluation import score_example

    seen: list[str] = []

    class Recording:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            seen.append(request.messages[-1].content)
            return ChatResponse("(A)")

    case = next(c for c in FIXTURE["end_choice"] if c["instruction_pos"] == "Q_end" and c["prompt"].count("\n") == 2)
    for end_choice, expected in (("paper", case["official"]), ("question", "(E)")):
        seen.clear()
        params = TaskModelParams(answer_extraction="second_turn", end_choice=end_choice)
        example = Example(input=case["question"], answers=("(A)",))
        await score_example(Recording(), case["prompt"], example, metric=MetricKind.MULTIPLE_CHOICE, params=params,
                            task="bbh/date_understanding")
        assert seen[-1] == f"Therefore, summarize your answer with an option among (A) and {expected}."
    assert case["official"] == "(B)"
