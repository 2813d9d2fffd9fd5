"""`optimizer.update` (generate | edit) and `optimizer.budget_in_prompt` (w_lr | wo_lr) with the `paper` text equal
the official GPO code's output for the same states, byte for byte.

The fixture tests/unit/fixtures/paper_meta_prompt_update_official.json was written by running the official rendering
(RUCAIBox/GPO at 765df20: Generate_Without_Gradient and Edit_Without_Gradient .gen_util_gradient_text with
include_qa false, K_Update.update_momentum "para", W_LR and Wo_LR .use_learning_rate) unmodified in /tmp with pandas
and the dataset class stubbed; only the resulting strings are committed (see the file's "source").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.core.paper_meta_prompt import build_paper_meta_prompt
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "paper_meta_prompt_update_official.json").read_text("utf-8")
)
EXAMPLES = [Example(input=e["input"], answers=(e["answer"],)) for e in FIXTURE["examples"]]


def _render(case: dict) -> str:
    return build_paper_meta_prompt(
        current_prompt=case["current_prompt"],
        retrieved=[TrajectoryEntry(p, s, i) for i, (p, s) in enumerate(case["retrieved"])],
        format_examples=[EXAMPLES[i] for i in case["format_indices"]],
        edit_budget=case["budget"],
        placement=PromptPlacement(case["placement"]),
        current_score=case["current_score"],
        update=case["update"],
        budget_in_prompt=case["learning_rate"] == "w_lr",
    )


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_matches_official_text_byte_for_byte(case: dict) -> None:
    assert _render(case) == case["expected"]


def test_fixture_covers_the_2x2_grid_with_and_without_history() -> None:
    grid = {(c["update"], c["learning_rate"], bool(c["retrieved"])) for c in FIXTURE["cases"]}
    assert grid == {(u, lr, h) for u in ("generate", "edit") for lr in ("w_lr", "wo_lr") for h in (True, False)}


def test_edit_text_differs_from_generate_and_budget_line_only_with_w_lr() -> None:
    by_name = {c["name"]: c["expected"] for c in FIXTURE["cases"]}
    edit = by_name["edit_w_lr_two_retrieved_end"]
    assert edit.startswith("Your task is to modify the current prompt")
    assert edit.endswith("Wrap the modified prompt with <START> and <END>.")
    assert "You are allowed to change up to 37 words" in edit
    assert "You are allowed to change" not in by_name["edit_wo_lr_two_retrieved_end"]
    assert "You are allowed to change" not in by_name["generate_wo_lr_two_retrieved_end"]


def test_unknown_update_is_an_error() -> None:
    with pytest.raises(ValueError, match="update must be generate or edit"):
        build_paper_meta_prompt(
            current_prompt="p", retrieved=[TrajectoryEntry("p", 0.5, 0)], format_examples=[], edit_budget=5,
            placement=PromptPlacement.END, update="rewrite",
        )
