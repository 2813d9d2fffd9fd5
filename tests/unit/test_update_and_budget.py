"""`optimizer.update` (generate | edit) and `optimizer.budget_in_prompt` (true | false) with gpo-ray's own template:
the rendering for fixed states, config validation, the fingerprint, and `plan --show-meta-prompt`. The `paper` text
is checked against the official code in test_core_paper_meta_prompt_update.py."""

from __future__ import annotations

import dataclasses

import pytest

from gpo_ray.cli import main
from gpo_ray.config import MetaPromptTemplate, OptimizerSettings, RunConfig, load_config
from gpo_ray.core.meta_prompt import DEFAULT_TEMPLATE, build_meta_prompt
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import ConfigError
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

HISTORY = [TrajectoryEntry("Answer the question.", 0.415, 0), TrajectoryEntry("Let's think step by step.", 0.72, 2)]
EXAMPLES = [Example(input="Is 7 prime?", answers=("Yes",))]

EXPECTED_EDIT_NO_BUDGET = (
    "Your job is to improve a prompt for a language model by editing it. In the task examples below, the placeholder "
    "<PROMPT> marks where the prompt is inserted; your edited prompt will replace it. A good prompt makes the model "
    "give the correct answer as often as possible.\n\n"
    "Here are earlier prompts for this task with their scores, from lowest to highest. Scores range from 0 to 100; "
    "higher is better.\n\nPrompt: Answer the question.\nscore: 42/100\n\nPrompt: Let's think step by step.\n"
    "score: 72/100\n\n"
    "This is the current prompt, the one to improve:\n<current_prompt>\nLet's think step by step.\n</current_prompt>\n\n"
    "Here are some examples of the task. <PROMPT> shows where the prompt is placed.\n\nQ: Is 7 prime?\n<PROMPT>\nA: Yes"
    "\n\n"
    "Analyse the examples and the earlier prompts: notice what the higher-scoring prompts do that the lower-scoring "
    "ones do not. Then edit the current prompt: keep what works, change what does not, so that the edited prompt is "
    "different from all the prompts above and should score higher than all of them.\n\n"
    "Write the edited prompt between <START> and <END>."
)


def build(update: str, budget_in_prompt: bool, structured: bool = False) -> str:
    return build_meta_prompt(
        current_prompt="Let's think step by step.", retrieved=HISTORY, format_examples=EXAMPLES, edit_budget=17,
        placement=PromptPlacement.END, structured=structured, update=update, budget_in_prompt=budget_in_prompt,
    )


def test_edit_without_budget_renders_exactly():
    assert build("edit", False) == EXPECTED_EDIT_NO_BUDGET


def test_edit_with_budget_adds_the_budget_line_before_the_output_line():
    assert build("edit", True) == EXPECTED_EDIT_NO_BUDGET.replace(
        "\n\nWrite the edited prompt", "\n\nYou may change up to 17 words of the current prompt.\n\nWrite the edited prompt"
    )


def test_generate_is_the_default_rendering_and_without_budget_only_drops_that_line():
    default = build_meta_prompt(
        current_prompt="Let's think step by step.", retrieved=HISTORY, format_examples=EXAMPLES, edit_budget=17,
        placement=PromptPlacement.END, structured=False,
    )
    assert build("generate", True) == default
    assert build("generate", False) == default.replace("You may change up to 17 words of the current prompt.\n\n", "")
    assert DEFAULT_TEMPLATE.task in default and DEFAULT_TEMPLATE.edit_task not in default


def test_edit_structured_asks_for_the_edited_prompt_as_json():
    assert build("edit", True, structured=True).endswith('whose "prompt" value is the edited prompt.')


def test_edit_sentences_can_be_overridden_like_any_other():
    s = OptimizerSettings(update="edit", meta_prompt={"edit_task": "Edit it."})
    assert s.meta_prompt == {"edit_task": "Edit it."}
    t = dataclasses.replace(MetaPromptTemplate(), edit_task="Edit it.")
    text = build_meta_prompt(current_prompt="p", retrieved=[], format_examples=[], edit_budget=3,
                             placement=PromptPlacement.END, structured=False, template=t, update="edit")
    assert text.startswith("Edit it.\n\n")


@pytest.mark.parametrize("bad", [{"update": "rewrite"}, {"budget_in_prompt": "sometimes"},
                                 {"budget_in_prompt": False, "edit_enforcement": "strict"}])
def test_config_rejects_undefined_values_and_combinations(bad):
    with pytest.raises(ValueError):
        OptimizerSettings(**bad)


def test_config_error_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tasks: [example/arithmetic]\noptimizer:\n  budget_in_prompt: false\n  edit_enforcement: strict\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "\n" not in str(e.value).strip() and "budget_in_prompt" in str(e.value)


@pytest.mark.parametrize("style", ["own", "paper"])
@pytest.mark.parametrize("update", ["generate", "edit"])
@pytest.mark.parametrize("budget", [True, False])
def test_every_combination_is_valid_with_both_styles(style, update, budget):
    s = OptimizerSettings(meta_prompt_style=style, update=update, budget_in_prompt=budget)
    assert (s.update, s.budget_in_prompt) == (update, budget)


def test_defaults_keep_the_fingerprint():
    base = RunConfig(tasks=["x"]).fingerprint()
    assert base == RunConfig(tasks=["x"], optimizer={"update": "generate", "budget_in_prompt": True}).fingerprint()
    assert base != RunConfig(tasks=["x"], optimizer={"update": "edit"}).fingerprint()
    assert base != RunConfig(tasks=["x"], optimizer={"budget_in_prompt": False}).fingerprint()


@pytest.mark.parametrize("preset", [[], ["--preset", "paper"]])
def test_plan_shows_the_variant(tmp_path, capsys, preset):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  update: edit\n  budget_in_prompt: false\n")
    assert main(["plan", "--task", "example/arithmetic", str(path), *preset, "--show-meta-prompt"]) == 0
    out = capsys.readouterr().out
    if preset:
        assert "Your task is to modify the current prompt to replace <Prompt>." in out
        assert "Wrap the modified prompt with <START> and <END>." in out
        assert "You are allowed to change up to" not in out
    else:
        assert DEFAULT_TEMPLATE.edit_task in out and "value is the edited prompt." in out
        assert "You may change up to" not in out
