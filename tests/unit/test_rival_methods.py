"""The rival optimizers (optimizer.method ape | apo | opro | pe2): their meta-prompts rendered for fixed states
against their sources (the upstream code's text, copied here as the upstream writes it), their selection rules on
scripted scores, `plan` counting exactly the calls a run makes, and a setting a method's paper does not define
refused in one line."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from pydantic import ValidationError

from gpo_ray.config import ApoSettings, OproSettings, OptimizerSettings
from gpo_ray.core.design import design_for
from gpo_ray.core.design.method import (
    UCBBandits,
    apo_stream_slice,
    beam_of,
    best_of_step,
    keep_best,
    opro_history,
)
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task, step1_meta_prompt
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.results import StepResult
from gpo_ray.core.rival_text import (
    ape_forward_request,
    apo_edit_request,
    apo_error_string,
    apo_gradient_request,
    opro_extract,
    opro_meta_prompt,
    parse_tagged_text,
    resample_request,
)
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.testing import FakeLLMConfig
from gpo_ray.vocabulary import PromptPlacement, Purpose
from tests.unit.test_core_loop import bag_of_words, example_task, task_model_config
from tests.fakes import RecordingScriptedLLM

DEMOS = (Example("2 + 2", ("4",)), Example("3 + 5", ("8",)))


# --- the meta-prompts against their sources -------------------------------------------------------------------------


def test_ape_forward_request_is_the_upstream_template_with_the_demos_filled_in() -> None:
    # keirp/automatic_prompt_engineer@eac521c ape.py: get_simple_prompt_gen_template (forward) and simple_ape's
    # demos_template; template.py fills [full_DEMO] with the demos joined by a blank line; the chat model gets the
    # text up to [APE].
    upstream = ("I gave a friend an instruction. Based on the instruction they produced the following input-output "
                "pairs:\n\n[full_DEMO]\n\nThe instruction was to [APE]")
    demos = "\n\n".join("Input: [INPUT]\nOutput: [OUTPUT]".replace("[INPUT]", d.input).replace("[OUTPUT]", d.answer)
                        for d in DEMOS)
    assert ape_forward_request(DEMOS) == upstream.replace("[full_DEMO]", demos).replace("[APE]", "")
    assert ape_forward_request(DEMOS).endswith("Output: 8\n\nThe instruction was to ")


def test_resampling_is_the_upstream_paraphrase_request() -> None:
    prompt_section = "Add the numbers."
    # microsoft/LMOps@4f2a9de optimizers.py generate_synonyms, verbatim:
    rewriter_prompt = f"Generate a variation of the following instruction while keeping the semantic meaning.\n\nInput: {prompt_section}\n\nOutput:"  # noqa: E501
    assert resample_request(prompt_section) == rewriter_prompt


def _upstream_gradient(prompt, error_string, num_feedbacks):
    # microsoft/LMOps@4f2a9de optimizers.py ProTeGi._get_gradients, verbatim (indentation included).
    gradient_prompt = f"""
        I'm trying to write a zero-shot classifier prompt.
    
        My current prompt is:
        "{prompt}"

        But this prompt gets the following examples wrong:
        {error_string}

        give {num_feedbacks} reasons why the prompt could have gotten these examples wrong.
        Wrap each reason with <START> and <END>
        """  # noqa: W293
    return '\n'.join([line.lstrip() for line in gradient_prompt.split('\n')])


def _upstream_edit(prompt, error_str, feedback_str, steps_per_gradient):
    # microsoft/LMOps@4f2a9de optimizers.py ProTeGi.apply_gradient, verbatim.
    transformation_prompt = f"""
        I'm trying to write a zero-shot classifier.
        
        My current prompt is:
        "{prompt}"

        But it gets the following examples wrong:
        {error_str}

        Based on these examples the problem with this prompt is that {feedback_str}

        Based on the above information, I wrote {steps_per_gradient} different improved prompts.
        Each prompt is wrapped with <START> and <END>.

        The {steps_per_gradient} new prompts are:
        """  # noqa: W293
    return '\n'.join([line.lstrip() for line in transformation_prompt.split('\n')])


def _upstream_error_string(texts, labels, preds):
    # microsoft/LMOps@4f2a9de optimizers.py ProTeGi._sample_error_str after its sampling (stringify_prediction: str).
    error_string = ''
    error_idx = 0
    for t, l, p in zip(texts, labels, preds):  # noqa: E741
        error_string += f'## Example {error_idx+1}\n'
        error_string += f'Text: \"{t.strip()}\"\nLabel: {l}\nPrediction: {p}\n\n'
        error_idx += 1
    return error_string.strip()


def test_apo_requests_are_the_upstream_f_strings() -> None:
    errors = [("  What is 2 + 2?\n  Answer briefly.", "4", "5"), ("3 + 5", "8", "9")]
    error_string = apo_error_string(errors)
    assert error_string == _upstream_error_string(*zip(*errors, strict=True))
    assert apo_gradient_request("Add.", error_string, 1) == _upstream_gradient("Add.", error_string, 1)
    assert apo_edit_request("Add.", error_string, "it is vague", 1) == _upstream_edit("Add.", error_string,
                                                                                       "it is vague", 1)
    assert parse_tagged_text("x <START> one <END> y <START>two<END> <START>open") == ["one", "two"]


def test_opro_meta_prompt_is_gen_meta_prompt_for_a_gpt_optimizer() -> None:
    history = [("Solve it.", 0.5), ("Let's solve the problem.", 0.2), ("Think step by step.", 0.75)]
    text = opro_meta_prompt(history, DEMOS, placement=PromptPlacement.END)
    # google-deepmind/opro@e81b2f5 opt_utils.gen_meta_prompt, both_instructions_and_exemplars, gpt-3.5-turbo,
    # instruction_pos Q_end, include_qa False, 100 score buckets, threshold 0.3 (0.2 is left out), ascending.
    expected = (
        "Your task is to generate the instruction <INS>. Below are some previous instructions with their scores. "
        "The score ranges from 0 to 100.\n"
        "\ntext:\nSolve it.\nscore:\n50\n"
        "\ntext:\nThink step by step.\nscore:\n75\n"
        "\n\n"
        "Below are some problems.\n"
        "\nProblem:\n2 + 2\n<INS>\n\nGround truth answer:\n4\n"
        "\nProblem:\n3 + 5\n<INS>\n\nGround truth answer:\n8\n"
        "\n\nGenerate an instruction that is different from all the instructions <INS> above, and has a higher "
        "score than all the instructions <INS> above. The instruction should begin with <INS> and end with </INS>. "
        "The instruction should be concise, effective, and generally applicable to all problems above."
    )
    assert text == expected
    begin = opro_meta_prompt(history, DEMOS[:1], placement=PromptPlacement.BEGINNING)
    assert "\nProblem:\n<INS>\n2 + 2\n" in begin
    # Only the best max_instructions are shown, still ascending.
    many = [(f"p{i}", i / 30) for i in range(30)]
    shown = opro_meta_prompt(many, (), placement=PromptPlacement.END, max_instructions=20, threshold=0.0)
    assert shown.count("\ntext:\n") == 20 and shown.index("\ntext:\np10\n") < shown.index("\ntext:\np29\n")
    assert "p9\n" not in shown
    # Its reply is read as optimize_instructions reads a GPT optimizer's.
    assert opro_extract("Sure. <INS> Check each step. </INS> done") == "Check each step."
    assert opro_extract("<INS>Open ended") == "Open ended"
    assert opro_extract("<START>ours<END>") is None


# --- selection rules on scripted scores ------------------------------------------------------------------------


def _c(prompt: str, score: float) -> ScoredCandidate:
    return ScoredCandidate(prompt=prompt, score=score, edit_distance=0)


def test_ape_keeps_the_best_of_the_candidates_and_the_current_prompt() -> None:
    current = TrajectoryEntry("cur", 0.5, 1)
    assert keep_best(current, [_c("a", 0.4), _c("b", 0.7), _c("c", 0.7)]) == ("b", 0.7)  # ties: the earlier
    assert keep_best(current, [_c("a", 0.5), _c("b", 0.2)]) == ("cur", 0.5)  # ties with the current: it stays
    assert keep_best(current, []) == ("cur", 0.5)


def test_opro_moves_to_the_steps_best_instruction_and_shows_every_scored_one() -> None:
    assert best_of_step([_c("a", 0.3), _c("b", 0.6), _c("c", 0.6)]) == _c("b", 0.6)
    assert best_of_step([]) is None
    records = [StepResult(step=0, edit_budget=0, prompt="init", eval_score=0.1),
               StepResult(step=1, edit_budget=0, prompt="b", eval_score=0.2, candidates=(_c("a", 0.3), _c("b", 0.6))),
               StepResult(step=2, edit_budget=0, prompt="d", eval_score=0.4, candidates=(_c("d", 0.9),))]
    assert opro_history("init", 0.25, records) == [("init", 0.25), ("a", 0.3), ("b", 0.6), ("d", 0.9)]


def test_apo_beam_is_the_best_by_bandit_estimate_as_main_py_sorts() -> None:
    # sorted(zip(scores, candidates), reverse=True)[:beam_size]: ties go to the larger text.
    assert beam_of([0.5, 0.9, 0.5, 0.1], ["a", "b", "c", "d"], 3) == [("b", 0.9), ("c", 0.5), ("a", 0.5)]


def test_ucb_bandit_explores_then_exploits_on_scripted_scores() -> None:
    bandit = UCBBandits(4, samples=2, c=1.0, rng=random.Random(0))
    first = bandit.choose(2, 0)  # nothing pulled yet: a seeded random sample
    assert len(set(first)) == 2
    bandit.update([0, 1], [1.0, 0.0])
    # t = 1: log(1) = 0, no exploration bonus: the best mean first, then the unpulled arms (mean 0) by index desc.
    assert bandit.choose(2, 1) == [0, 3]
    bandit.update([2, 3], [0.5, 0.5])
    assert bandit.get_scores() == [1.0, 0.0, 0.5, 0.5]
    # t = 2: the bonus is equal for equal counts: the means decide.
    assert bandit.choose(3, 2)[0] == 0


def test_apo_draws_never_repeat_an_example_until_the_split_is_used_up() -> None:
    train = [Example(str(i), (str(i),)) for i in range(10)]
    drawn = [e.input for start, size in ((0, 4), (4, 3), (7, 3)) for e in apo_stream_slice(train, start, size, 0, "t")]
    assert sorted(drawn) == [str(i) for i in range(10)]
    assert apo_stream_slice(train, 10, 2, 0, "t") == apo_stream_slice(train, 0, 2, 0, "t")  # then it cycles


# --- runs: plan counts the calls made --------------------------------------------------------------------------


PHRASES = [f"Check the arithmetic, part {i}." for i in range(400)]  # each raises the task model's accuracy
SMALL_APO = ApoSettings(beam_size=2, minibatch_size=2, n_gradients=2, mc_samples_per_step=1, max_expansion_factor=3,
                        eval_rounds=2, eval_prompts_per_round=2, samples_per_eval=1)
METHOD_SETTINGS = {
    "ape": {"candidates": 3},
    "opro": {"candidates": 3},
    "apo": {"apo": SMALL_APO},
    "pe2": {"candidates": 2, "retrieval": "recency"},
}


async def _run(method: str):
    settings = OptimizerSettings(method=method, epochs=1, batch_size=4, initial_prompt="Answer the question.",
                                 **METHOD_SETTINGS[method])
    optimizer, task_llm = RecordingScriptedLLM(FakeLLMConfig(optimizer_phrases=PHRASES)), RecordingScriptedLLM(task_model_config())
    services = InProcessServices(optimizer_llm=optimizer, task_llm=task_llm, embed=bag_of_words,
                                 task_params=TaskModelParams())
    result = await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run()
    return settings, result, optimizer, task_llm


@pytest.mark.parametrize("method", ["ape", "apo", "opro", "pe2"])
async def test_plan_counts_the_calls_a_run_of_each_method_makes(method) -> None:
    settings, result, optimizer, task_llm = await _run(method)
    plan = plan_task(example_task(), settings, optimizer_max_tokens=256, task_max_tokens=256)
    assert len(result.steps) == plan.steps == 2
    assert len(optimizer.requests) == plan.optimizer_calls
    # A step whose prompt is already on the trajectory (APO's beam may keep its best) reuses its eval score: plan
    # counts that scoring, a bound.
    reused = sum(st.counts.get("reused_score", 0) for st in result.steps)
    assert len(task_llm.requests) == plan.task_model_calls - 8 * reused
    assert plan.method == ("gpo" if method == "pe2" else method)
    if method != "pe2":
        assert sum(st.counts["optimizer_calls"] for st in result.steps) == plan.optimizer_calls
        eval_and_test = 8 + 2 * 8  # the initial prompt on the eval split, the initial and best on the test split
        assert sum(st.counts["scoring_calls"] for st in result.steps) + eval_and_test == len(task_llm.requests)
        # The step-1 request plan shows is the one the run sent first (APO: its gradient request, up to the errors;
        # OPRO: the initial instruction's score not known before).
        shown = step1_meta_prompt(example_task(), settings, structured=False)
        first = optimizer.requests[0].messages[-1].content
        if method == "ape":
            assert first == shown
        elif method == "apo":
            assert first.startswith(shown.split("<the wrong")[0])
        else:
            assert first.split("Below are some problems.")[1] == shown.split("Below are some problems.")[1]
            assert "score:\n<the initial instruction's training score" in shown


async def test_each_method_asks_by_its_own_requests() -> None:
    _, _, ape, _ = await _run("ape")
    texts = [r.messages[-1].content for r in ape.requests]
    assert [t.startswith("I gave a friend an instruction.") for t in texts] == [True] * 3 + [False] * 3
    assert all(t.startswith("Generate a variation of the following instruction") for t in texts[3:])
    assert {r.purpose for r in ape.requests} == {Purpose.CANDIDATES}
    assert len({r.seed for r in ape.requests}) == 6  # every sample its own seed

    _, result, apo, _ = await _run("apo")
    kinds = Counter(r.purpose for r in apo.requests)
    plan = plan_task(example_task(), OptimizerSettings(method="apo", epochs=1, batch_size=4, apo=SMALL_APO),
                     optimizer_max_tokens=256, task_max_tokens=256)
    assert kinds[Purpose.FEEDBACK] == plan.method_calls["gradients"]
    assert kinds[Purpose.CANDIDATES] == plan.method_calls["edits"] + plan.method_calls["paraphrases"]
    assert result.steps[0].beam is not None and len(result.steps[1].beam) == 2
    assert result.steps[1].beam[0] == result.steps[1].prompt

    _, result, opro, _ = await _run("opro")
    second = [r.messages[-1].content for r in opro.requests][3]
    shown = [c for c in result.steps[0].candidates if c.score >= 0.3] + (
        [_c("Answer the question.", result.steps[0].train_score)] if result.steps[0].train_score >= 0.3 else [])
    assert second.count("\ntext:\n") == len(shown)  # step 2 shows what step 1 scored


async def test_a_resumed_apo_run_goes_on_from_the_checkpointed_beam() -> None:
    settings, result, _, _ = await _run("apo")
    step1 = StepResult.from_dict(result.steps[0].to_dict())
    assert step1.beam == result.steps[0].beam
    optimizer, task_llm = RecordingScriptedLLM(FakeLLMConfig(optimizer_phrases=PHRASES)), RecordingScriptedLLM(task_model_config())
    services = InProcessServices(optimizer_llm=optimizer, task_llm=task_llm, embed=bag_of_words,
                                 task_params=TaskModelParams())
    initial = StepResult(step=0, edit_budget=0, prompt=result.initial_prompt, eval_score=result.initial_eval_score)
    resumed = await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run(
        completed=[initial, step1])
    assert resumed.steps[1].to_dict() == result.steps[1].to_dict()


# --- settings a method's paper does not define ------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"method": "ape", "direction": "feedback"}, "optimizer.direction is not a setting of method ape"),
    ({"method": "opro", "schedule": {"initial": 10}}, "optimizer.schedule is not a setting of method opro"),
    ({"method": "apo", "candidates": 4}, "optimizer.candidates is not a setting of method apo"),
    ({"method": "ape", "opro": {"exemplars": 2}}, "optimizer.opro holds method opro's settings, but optimizer.method "
     "is ape"),
    ({"method": "pe2", "update": "generate"}, "method pe2 is the design-space point direction feedback, update edit"),
])
def test_a_setting_the_methods_paper_does_not_define_is_a_one_line_error(settings, message) -> None:
    with pytest.raises(ValidationError) as raised:
        OptimizerSettings(**settings)
    (error,) = raised.value.errors()
    assert message in error["msg"] and "\n" not in error["msg"]


def test_pe2_is_a_named_point_of_the_design_space() -> None:
    pe2 = OptimizerSettings(method="pe2")
    assert (pe2.direction, pe2.update) == ("feedback", "edit")
    assert design_for(pe2).method is None and design_for(pe2).direction.name == "feedback"
    assert {m: design_for(OptimizerSettings(method=m)).method.name for m in ("ape", "apo", "opro")} == {
        "ape": "ape", "apo": "apo", "opro": "opro"}
    assert OptimizerSettings(method="opro", opro=OproSettings(exemplars=0)).opro.exemplars == 0
