"""`optimizer.direction` and `optimizer.momentum` in gpo-ray's own wording and in the loop (in-process, scripted
models): what each variant sends, what it records per step, that a resumed run goes on exactly, and which
combinations are config errors. The paper texts are checked against the official code in
test_core_paper_meta_prompt_variants.py."""

from __future__ import annotations


import pytest

from gpo_ray.config import MomentumSettings, OptimizerSettings, RunConfig, ScheduleConfig, load_config
from gpo_ray.core.evaluation import TaskModelParams, shown_prediction
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.meta_prompt import build_meta_prompt
from gpo_ray.core.plan import plan_task, step1_meta_prompt
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import TrajectoryEntry, WrongExample
from gpo_ray.core.variants import (
    build_feedback_request,
    build_summarize_feedback_request,
    build_summarize_prompts_request,
    extract_reply,
    wrong_examples,
)
from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import ChatRequest
from gpo_ray.tasks.types import Example
from gpo_ray.testing import ScriptedLLM
from gpo_ray.testing.scripted import FEEDBACK_REASONS
from gpo_ray.vocabulary import MetricKind, PromptPlacement
from tests.unit.test_core_loop import bag_of_words, example_task, optimizer_config, task_model_config

EXAMPLE = Example(input="What is 2 + 3?", answers=("5",))

VARIANTS = [
    ("none", "prompts", "summarize"),
    ("none", "none", "retrieve"),
    ("feedback", "prompts", "retrieve"),
    ("feedback", "prompts", "summarize"),
    ("feedback", "feedback", "retrieve"),
    ("feedback", "feedback", "summarize"),
    ("feedback", "none", "retrieve"),
]


# --- own wording, fixed states --------------------------------------------------------------------------------------


def test_own_feedback_request_for_a_fixed_state() -> None:
    text = build_feedback_request(
        current_prompt="Answer the question.",
        wrong=[WrongExample("What is 2 + 3?", "6", "5"), WrongExample("What is 1 + 1?", "3", "2")],
    )
    assert text == (
        "Your job is to find out why a prompt for a language model fails. The model was given the prompt below "
        "together with each question of a few task examples, and answered the questions shown further down wrongly."
        "\n\nThis is the current prompt, the one to improve:\n<current_prompt>\nAnswer the question.\n</current_prompt>"
        "\n\nThese are the examples it got wrong, with the model's answer and the correct one:\n<wrong_examples>\n"
        "Question: What is 2 + 3?\nModel's answer: 6\nCorrect answer: 5\n\n"
        "Question: What is 1 + 1?\nModel's answer: 3\nCorrect answer: 2\n</wrong_examples>\n\n"
        "Compare the model's answers with the correct ones and explain what in the prompt led the model to answer "
        "wrongly. Be specific and brief.\n\nWrite your explanation between <START> and <END>."
    )
    none_wrong = build_feedback_request(current_prompt="p", wrong=[])
    assert "<wrong_examples>\n(none: the model answered every example correctly)\n</wrong_examples>" in none_wrong


def test_a_task_without_references_shows_no_answer_and_the_paper_style_refuses_it() -> None:
    """answer_field: null (a judge or a function decides): the requests show inputs, replies and what the metric said,
    never an empty "Correct answer" line; the paper's meta-prompts, which show each answer, say so at once."""
    no_reference = Example(input="My lamp arrived broken.", answers=(), id="M-1")
    (wrong,) = wrong_examples([no_reference], [(0.0, "Sorry.", "The reply does not name the refund policy.")])
    assert wrong.answer is None
    text = build_feedback_request(current_prompt="Reply to the customer.", wrong=[wrong])
    assert ("<wrong_examples>\nQuestion: My lamp arrived broken.\nModel's answer: Sorry.\n"
            "What the metric found: The reply does not name the refund policy.\n</wrong_examples>") in text
    shown = build_meta_prompt(current_prompt="Reply.", retrieved=[], format_examples=[no_reference], edit_budget=5,
                              placement=PromptPlacement.END, structured=False)
    assert "My lamp arrived broken." in shown and "Answer:" not in shown.split("My lamp arrived broken.")[1][:40]
    source = {"name": "support/replies", "format": "jsonl", "path": "x.jsonl", "answer_field": None,
              "metric": {"kind": "judge", "rubric": "polite"}}
    with pytest.raises(ConfigError, match="task 'support/replies' has none"):
        load_config(overrides={"tasks": ["support/replies"], "task_sources": [source], "preset": "paper"})

def test_own_summarize_requests_for_fixed_states() -> None:
    prompts = build_summarize_prompts_request(previous=TrajectoryEntry("Carried prompt.", 0.5, 1),
                                              current=TrajectoryEntry("Current prompt.", 0.75, 2))
    assert ("The prompt carried over from the earlier steps:\n<previous_prompt>\nCarried prompt.\n</previous_prompt>\n"
            "Its score: 50/100\n\nThe current prompt:\n<latest_prompt>\nCurrent prompt.\n</latest_prompt>\n"
            "Its score: 75/100\n\n") in prompts
    assert prompts.endswith("Write the new prompt between <START> and <END>.")
    problems = build_summarize_feedback_request(previous="Too vague.", current="No answer format.")
    assert ("Problems found with the earlier prompts:\n<previous_problems>\nToo vague.\n</previous_problems>\n\n"
            "Problems found with the current prompt:\n<current_problems>\nNo answer format.\n</current_problems>"
            ) in problems
    assert problems.endswith("Write the merged analysis between <START> and <END>.")


@pytest.mark.parametrize("update", ["generate", "edit"])
def test_own_meta_prompt_with_the_feedback_and_with_a_carried_prompt(update: str) -> None:
    common = {"current_prompt": "Answer the question.", "format_examples": [EXAMPLE], "edit_budget": 7,
              "placement": PromptPlacement.END, "structured": False, "update": update}
    plain = build_meta_prompt(retrieved=[], **common)
    with_feedback = build_meta_prompt(retrieved=[TrajectoryEntry("Old.", 0.25, 0)], gradient="It is too vague.",
                                      **common)
    sections = with_feedback.split("\n\n")
    current = next(i for i, s in enumerate(sections) if "<current_prompt>" in s)
    assert sections[current + 1] == "An analysis of why the current prompt fails on some examples:"
    assert sections[current + 2] == "It is too vague."
    assert "Make sure the new prompt fixes the problems found in the analysis." in sections
    assert "analysis" not in plain
    carried = build_meta_prompt(retrieved=[], previous=TrajectoryEntry("Carried.", 0.5, 1), **common)
    assert ("Here is a prompt carried over from the earlier steps with its score. Scores range from 0 to 100; higher "
            "is better.\n\nPrompt: Carried.\nscore: 50/100\n\nThis is the current prompt") in carried
    assert ("edit" in with_feedback.split("\n")[0]) == (update == "edit")


def test_extract_reply_is_the_official_extract_text_and_polish_sentence() -> None:
    assert extract_reply("Sure.\n<START> **the** prompt is vague. <END> bye") == "The prompt is vague."
    assert extract_reply("no markers at all") == "No markers at all"
    assert extract_reply("<START>x") == "x"


def test_shown_prediction_is_the_second_reply_else_the_parsed_answer() -> None:
    ex = Example(input="Is it? Options:\n(A) yes\n(B) no", answers=("(A)",))
    assert shown_prediction(MetricKind.MULTIPLE_CHOICE, "(B)", ex, second_reply=" (B) ", variant="paper") == " (B) "
    assert shown_prediction(MetricKind.NUMERIC, "So the answer is 17.", EXAMPLE, second_reply=None,
                            variant="default") == "17"
    assert shown_prediction(MetricKind.NUMERIC, "The answer is 17.", EXAMPLE, second_reply=None,
                            variant="paper") == "17"


# --- the loop, in-process -------------------------------------------------------------------------------------------


def loop_settings(direction: str, content: str, update: str, **kw) -> OptimizerSettings:
    base = dict(epochs=2, batch_size=4, candidates=3, retrieval="recency", retrieval_k=2,
                initial_prompt="Answer the question.", schedule=ScheduleConfig(initial=12, final=4),
                direction=direction, momentum=MomentumSettings(content=content, update=update))
    base.update(kw)
    return OptimizerSettings(**base)


class Recording(ScriptedLLM):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.texts: list[str] = []

    async def complete(self, request: ChatRequest):
        self.texts.append(request.messages[-1].content)
        return await super().complete(request)


async def _run(settings: OptimizerSettings, completed=(), recorded=None):
    optimizer = Recording(optimizer_config())
    task_llm = ScriptedLLM(task_model_config())
    services = InProcessServices(optimizer_llm=optimizer, task_llm=task_llm, embed=bag_of_words,
                                 task_params=TaskModelParams(),
                                 on_step=(lambda t, r: recorded.append(r)) if recorded is not None else None)
    result = await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run(
        completed=completed)
    return result, optimizer, task_llm


@pytest.mark.parametrize(("direction", "content", "update"), VARIANTS)
async def test_each_variant_makes_its_extra_calls_and_records_them(direction, content, update) -> None:
    settings = loop_settings(direction, content, update)
    result, optimizer, _ = await _run(settings)
    plan = plan_task(example_task(), settings, optimizer_max_tokens=256, task_max_tokens=256)
    steps = result.steps
    assert len(steps) == plan.steps >= 3
    assert optimizer.calls["feedback"] == plan.feedback_calls == (len(steps) if direction == "feedback" else 0)
    assert optimizer.calls["summarize"] == plan.summarize_calls == (len(steps) - 1 if update == "summarize" else 0)
    assert [s.counts.get("feedback_calls", 0) for s in steps] == [int(direction == "feedback")] * len(steps)
    assert [s.counts.get("summarize_calls", 0) for s in steps] == [0] + [int(update == "summarize")] * (len(steps) - 1)
    assert sum(s.counts.get("feedback_scoring_calls", 0) for s in steps) == plan.feedback_scoring_calls
    candidates = [t for t in optimizer.texts if "<current_prompt>" in t and "<wrong_examples>" not in t
                  and "<latest_prompt>" not in t]
    assert len(candidates) == len(steps) * settings.candidates
    for step, first in zip(steps, candidates[:: settings.candidates], strict=True):
        # What the step's meta-prompt shows of the direction: the step's feedback, joined or merged ones.
        assert (step.feedback is not None) == (direction == "feedback")
        if direction == "feedback":
            assert step.feedback in FEEDBACK_REASONS
            assert "An analysis of why the current prompt fails" in first
            if content != "feedback" or update == "retrieve":
                assert step.feedback in first
        if content == "feedback" and update == "summarize":
            assert step.momentum in first and (step.step == 1 or step.momentum.startswith("Still: "))
        if content == "prompts" and update == "summarize":
            assert f"Prompt: {step.momentum}\n" in first and "Here is a prompt carried over" in first
        if content == "none":
            assert "Here are earlier prompts" not in first and "carried over" not in first
    if content == "prompts" and update == "summarize":
        summaries = [t for t in optimizer.texts if "<latest_prompt>" in t]
        # Step t merges the prompt carried from step t-1 with the current prompt (that of step t-1).
        for before, text in zip(steps[:-1], summaries, strict=True):
            assert f"<previous_prompt>\n{before.momentum}\n</previous_prompt>" in text
            assert f"<latest_prompt>\n{before.prompt}\n</latest_prompt>" in text


@pytest.mark.parametrize(("direction", "content", "update"), VARIANTS[2:] + VARIANTS[:1])
async def test_a_resumed_variant_run_goes_on_exactly_without_asking_again(direction, content, update) -> None:
    settings = loop_settings(direction, content, update)
    recorded: list[StepResult] = []
    full, _, _ = await _run(settings, recorded=recorded)
    # Through the checkpoint's JSON shape, as a resume reads it.
    restored = [StepResult.from_dict(r.to_dict()) for r in recorded[:3]]
    resumed, optimizer, _ = await _run(settings, completed=restored)
    assert resumed == full
    remaining = len(full.steps) - 2
    assert optimizer.calls["feedback"] == (remaining if direction == "feedback" else 0)
    assert optimizer.calls["summarize"] == (remaining if update == "summarize" else 0)


async def test_feedback_relevance_selection_embeds_past_feedback() -> None:
    settings = loop_settings("feedback", "feedback", "retrieve", retrieval="relevance", retrieval_k=2)
    result, optimizer, _ = await _run(settings)
    assert optimizer.calls["feedback"] == len(result.steps)
    last = [t for t in optimizer.texts if "An analysis of why" in t][-1]
    assert result.steps[-1].feedback in last


def test_step_record_keeps_its_shape_by_default_and_round_trips_the_variant_fields() -> None:
    plain = StepResult(step=1, edit_budget=5, prompt="p", eval_score=0.5)
    assert set(plain.to_dict()) == {"step", "edit_budget", "prompt", "eval_score", "candidates", "counts"}
    rich = StepResult(step=2, edit_budget=5, prompt="p", eval_score=0.5, feedback="f", momentum="m",
                      momentum_score=0.25)
    assert StepResult.from_dict(rich.to_dict()) == rich


def test_step1_meta_prompt_shows_the_variant() -> None:
    feedback = step1_meta_prompt(example_task(), loop_settings("feedback", "prompts", "summarize"), structured=False)
    assert "<the feedback of step 1" in feedback and "Here is a prompt carried over" in feedback
    paper = step1_meta_prompt(example_task(), loop_settings("feedback", "none", "retrieve", meta_prompt_style="paper"),
                              structured=False)
    assert "Below are the problems with this prompt.\n\n<the feedback of step 1" in paper
    assert "Below is the current prompt with its score." in paper


# --- configuration --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "message"), [
    ({"momentum": {"content": "feedback"}},
     "invalid config: optimizer: momentum.content feedback keeps past feedback: it needs optimizer.direction: "
     "feedback"),
    ({"momentum": {"content": "none", "update": "summarize"}},
     "invalid config: optimizer: momentum.update summarize needs something to summarize: momentum.content prompts "
     "or feedback"),
    ({"direction": "gradient"}, "invalid config: optimizer.direction: Input should be 'none' or 'feedback'"),
    ({"momentum": {"update": "k-list"}},
     "invalid config: optimizer.momentum.update: Input should be 'retrieve' or 'summarize'"),
])
def test_undefined_combinations_are_one_line_errors(optimizer, message) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"tasks": ["example/arithmetic"], "optimizer": optimizer})
    assert str(err.value) == message


def test_defaults_are_unchanged_and_fingerprint_neutral() -> None:
    plain = RunConfig.model_validate({"tasks": ["x"]})
    explicit = RunConfig.model_validate({"tasks": ["x"], "optimizer": {
        "direction": "none", "momentum": {"content": "prompts", "update": "retrieve"}}})
    assert plain.optimizer.direction == "none" and plain.optimizer.momentum == MomentumSettings()
    assert plain.fingerprint() == explicit.fingerprint()
    changed = RunConfig.model_validate({"tasks": ["x"], "optimizer": {"direction": "feedback"}})
    assert changed.fingerprint() != plain.fingerprint()


def test_report_shows_the_variant_and_the_extra_calls_per_step() -> None:
    from gpo_ray.report.tables import extra_calls, variant

    opt = RunConfig.model_validate({"tasks": ["x"], "optimizer": {
        "direction": "feedback", "momentum": {"content": "feedback", "update": "summarize"}, "update": "edit",
        "budget_in_prompt": False}}).public_dict()["optimizer"]
    assert variant(opt) == ("direction feedback, momentum feedback (summarize), update edit, budget in prompt no, "
                            "meta-prompt own")
    assert variant({}) == ("direction none, momentum prompts (retrieve), update generate, budget in prompt yes, "
                           "meta-prompt own")
    assert extra_calls({"feedback_calls": 1, "feedback_scoring_calls": 8, "summarize_calls": 1, "admitted": 3}) == (
        "feedback 1, feedback scoring 8, summarize 1")
    assert extra_calls({"admitted": 3}) == "–"
