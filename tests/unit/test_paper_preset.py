"""`preset: paper`: the config keys it sets, what it refuses, and a loop run whose optimizer requests equal the
official rendering of the run's own states (core/paper_meta_prompt.py, checked against the official code's text in
test_core_paper_meta_prompt.py)."""

from __future__ import annotations

import pytest

from gpo_ray.cli import main
from gpo_ray.config import PRESETS, OptimizerSettings, RunConfig, load_config
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import GPOTaskLoop, format_examples_for
from gpo_ray.core.paper_meta_prompt import SCORE_PLACEHOLDER, build_paper_meta_prompt
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.retrieval import retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import ChatRequest, ChatResponse
from gpo_ray.testing import ScriptedLLM
from gpo_ray.testing.scripted import current_prompt_of
from tests.unit.test_core_loop import example_task, optimizer_config, task_model_config


def test_preset_sets_the_official_configuration():
    c = load_config(overrides={"tasks": ["example/arithmetic"], "preset": "paper"})
    o = c.optimizer
    assert (o.meta_prompt_style, o.retrieval_order, o.format_example_sampling, o.repeated_candidates) == (
        "paper", "as_selected", "paper", "keep_score")
    assert (o.candidate_scoring, o.initial_prompt, o.candidates, o.format_examples) == (
        "eval", "Let's think step by step.", 8, 3)
    assert (o.retrieval, o.retrieval_k, o.epochs, o.batch_size) == ("relevance", 3, 3, 8)
    assert (c.optimizer_model.temperature, c.optimizer_model.max_tokens) == (1.0, 512)
    assert c.optimizer_model.uses_structured_output is False


def test_own_settings_win_over_the_preset_and_the_config_round_trips():
    c = load_config(overrides={"tasks": ["t"], "preset": "paper", "optimizer": {"retrieval": "recency"}})
    assert c.optimizer.retrieval == "recency" and c.optimizer.meta_prompt_style == "paper"
    again = RunConfig.model_validate(c.public_dict())  # what resume reads back from config.json
    assert again == c and again.fingerprint() == c.fingerprint()
    assert c.fingerprint() != load_config(overrides={"tasks": ["t"]}).fingerprint()


def test_defaults_stay_the_projects_own():
    o = OptimizerSettings()
    assert (o.meta_prompt_style, o.retrieval_order, o.format_example_sampling, o.repeated_candidates) == (
        "own", "score_ascending", "first", "drop")
    assert "preset" not in RunConfig(tasks=["t"]).fingerprint()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optimizer": {"placement": "system"}}, "no system placement"),
        ({"optimizer_model": {"structured_output": True}}, "structured_output"),
        ({"optimizer": {"meta_prompt": {"task": "x"}}}, "own template"),
        ({"optimizer": {"candidate_scoring": "train_batch"}}, "keep_score"),
    ],
)
def test_what_the_paper_style_refuses(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"tasks": ["t"], "preset": "paper", **overrides})


def test_seeded_format_examples_are_a_stable_sorted_draw():
    task = example_task()
    s = OptimizerSettings(format_examples=2, format_example_sampling="seeded")
    picked = format_examples_for(task, s)
    assert picked == format_examples_for(task, s) and len(picked) == 2
    order = [task.format_examples.index(e) for e in picked]
    assert order == sorted(order)
    assert format_examples_for(task, OptimizerSettings(format_examples=2)) == task.format_examples[:2]


def _hashed_bow(texts):
    """A fixed-width bag of words (the same vector whatever else is embedded with it)."""
    import zlib

    out = []
    for t in texts:
        v = [0.0] * 16
        for w in t.lower().split():
            v[zlib.crc32(w.encode()) % 16] += 1.0
        out.append(v)
    return out


class Recording:
    """Delegates to a scripted LLM and keeps every optimizer request's text."""

    def __init__(self, inner):
        self.inner = inner
        self.meta_prompts: list[str] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        text = request.messages[-1].content
        if current_prompt_of(text) is not None:
            self.meta_prompts.append(text)
        return await self.inner.complete(request)


def _paper_settings(**kw):
    preset = dict(PRESETS["paper"]["optimizer"])
    preset.update({"epochs": 1, "batch_size": 4, "candidates": 3, **kw})
    return OptimizerSettings(**preset)


async def test_loop_sends_the_official_text_for_its_own_states():
    task = example_task()
    settings = _paper_settings()
    optimizer = Recording(ScriptedLLM(optimizer_config()))
    services = InProcessServices(optimizer_llm=optimizer, task_llm=ScriptedLLM(task_model_config()), embed=_hashed_bow,
                                 task_params=TaskModelParams())
    loop = GPOTaskLoop(task, settings=settings, services=services, structured=False)
    result = await loop.run()
    trajectory = [TrajectoryEntry(result.initial_prompt, result.initial_eval_score, 0)]
    expected: list[str] = []
    for step in result.steps:
        prompts = [e.prompt for e in trajectory]
        vectors = _hashed_bow(prompts)
        retrieved = retrieve(trajectory, strategy="relevance", k=3, vectors=vectors, order="as_selected")
        meta = build_paper_meta_prompt(current_prompt=trajectory[-1].prompt, retrieved=retrieved,
                                       format_examples=format_examples_for(task, settings),
                                       edit_budget=step.edit_budget, placement=settings.placement)
        expected += [meta] * settings.candidates
        trajectory.append(TrajectoryEntry(step.prompt, step.eval_score, step.step))
    assert optimizer.meta_prompts == expected
    assert "Score: " + repr(result.initial_eval_score) in optimizer.meta_prompts[0]


class TwoCandidates:
    """An optimizer that always proposes the same two prompts."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(f"<START>Candidate {'AB'[request.sample_index % 2]}.<END>")


@pytest.mark.parametrize("repeated", ["keep_score", "drop"])
async def test_a_candidate_proposed_again_keeps_its_earlier_score(repeated):
    task = example_task()
    # gpo-ray's own selection rule with the keep_score reuse (the paper rule: test_paper_loop_official.py)
    settings = _paper_settings(candidates=2, repeated_candidates=repeated, retrieval="recency", selection="own")
    services = InProcessServices(optimizer_llm=TwoCandidates(), task_llm=ScriptedLLM(task_model_config()),
                                 embed=_hashed_bow, task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    first, second = result.steps[:2]
    assert {c.prompt for c in first.candidates} == {"Candidate A.", "Candidate B."}
    if repeated == "keep_score":
        other = next(c for c in first.candidates if c.prompt != first.prompt)
        assert second.prompt == other.prompt and second.eval_score == other.score
        assert second.counts["reused_score"] == 1 and second.counts["scoring_calls"] == 0
    else:
        assert second.prompt == first.prompt and not second.candidates  # nothing new: stays


def test_plan_shows_the_step1_request(capsys):
    assert main(["plan", "--task", "example/arithmetic", "--preset", "paper", "--show-meta-prompt"]) == 0
    out = capsys.readouterr().out
    assert out.count("Your task is to write a prompt to replace <Prompt>.") == 1
    assert f"Prompt: Let's think step by step.\nScore: {SCORE_PLACEHOLDER}\n" in out
    assert "You are allowed to change up to" in out and out.rstrip().endswith("Wrap the new prompt with <START> and <END>.")
    assert main(["plan", "--task", "example/arithmetic", "--show-meta-prompt"]) == 0
    assert f"score: {SCORE_PLACEHOLDER}/100" in capsys.readouterr().out


def test_plan_gives_the_papers_call_counts_for_a_bbh_task(shared_data_dir, capsys):
    import json

    args = ["plan", "--task", "bbh/navigate", "--data-dir", str(shared_data_dir), "--preset", "paper", "--json"]
    assert main(args) == 0
    plan = json.loads(capsys.readouterr().out)["tasks"]["bbh/navigate"]
    assert (plan["train"], plan["eval"], plan["steps"]) == (48, 48, 18)
    assert plan["optimizer_calls"] == 18 * 8
    # the initial prompt on eval, 8 candidates on the 48 eval examples a step, the current prompt on each step's
    # batch of 8 and every trajectory prompt on test (trace_scores: the initial and 18 steps'); each example asked
    # twice (the second turn for the final answer)
    first_turns = 48 + 18 * 8 * 48 + 18 * 8 + 19 * plan["test"]
    assert plan["second_turn_calls"] == first_turns
    assert plan["trace_scoring_calls"] == 2 * (18 * 8 + 19 * plan["test"])
    assert plan["task_model_calls"] == 2 * first_turns
