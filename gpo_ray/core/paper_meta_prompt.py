"""The official GPO meta-prompt (`optimizer.meta_prompt_style: paper`), assembled from core/paper_text.py.

For the same state (current prompt, retrieved prompts with their scores in the order given, exemplars, budget, prompt
placement) `build_paper_meta_prompt` returns the text the official code (RUCAIBox/GPO at 765df20, GPO.sh settings:
momentum_para_name "para", momentum_update_name "k-list", util_gradient_name "generate_without", learning_rate_name
"w_lr") sends to its optimizer, byte for byte. The assembly is ours; see tests/unit/test_core_paper_meta_prompt.py.

Quirks reproduced on purpose (README "The paper preset"):
- a score is printed as the official code prints its eval mean, a [0, 1] float in Python's shortest repr
  (``0.4791666666666667``), under a header that says scores range from 0 to 100;
- the budget line goes before the last line, followed by an empty line;
- the exemplars are not clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpo_ray.core import paper_text as T
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

# gpo-ray placement -> (exemplar shape, position description) of the official instruction_pos.
_PLACEMENTS = {
    PromptPlacement.END: (T.EXEMPLAR_Q_END, T.POSITION_Q_END),  # instruction_pos "Q_end"
    PromptPlacement.BEGINNING: (T.EXEMPLAR_Q_BEGIN, T.POSITION_Q_BEGIN),  # instruction_pos "Q_begin"
}

SCORE_PLACEHOLDER = "<the initial prompt's score on the eval split>"


def format_official_score(score: float | str) -> str:
    """A [0, 1] mean as the official code's f-string prints it (Python/numpy shortest repr); a str passes through
    (the placeholder `plan --show-meta-prompt` shows before any score exists)."""
    if isinstance(score, str):
        return score
    return repr(float(score))


def insert_budget(text: str, budget: int) -> str:
    """w_lr's insertion: the budget line goes before the last line of the text."""
    prefix, _, last = text.rpartition("\n")
    return prefix + "\n" + T.BUDGET.format(budget=budget) + "\n" + last


def build_paper_meta_prompt(
    *,
    current_prompt: str,
    retrieved: Sequence[TrajectoryEntry],
    format_examples: Sequence[Example],
    edit_budget: int,
    placement: PromptPlacement,
    current_score: float | str | None = None,
    update: str = "generate",
    budget_in_prompt: bool = True,
) -> str:
    """The official meta-prompt; `retrieved` is shown in the order given (the official selection methods' order).

    Without retrieved prompts, the official branch that shows the current prompt with its score (rounded to 2
    places, as the official code rounds it there); the GPO.sh configuration always has the k-list, which holds at
    least the initial prompt.

    `update`: "generate" (generate_without_gradient.py) or "edit" (edit_without_gradient.py); `budget_in_prompt`:
    w_lr (the budget line) or wo_lr (the text as is)."""
    if update not in ("generate", "edit"):
        raise ValueError(f"update must be generate or edit, got {update!r}")
    edit = update == "edit"
    if edit_budget < 0:
        raise ValueError(f"edit_budget must be >= 0, got {edit_budget}")
    try:
        exemplar, position = _PLACEMENTS[PromptPlacement(placement)]
    except KeyError:
        raise ValueError(
            f"the official meta-prompt has no {PromptPlacement(placement).value!r} placement (Q_end = end, "
            "Q_begin = beginning)"
        ) from None
    examples = "\n\n".join(exemplar.format(question=ex.input, answer=ex.answer) for ex in format_examples)
    if retrieved:
        history = T.HISTORY_HEADER + "\n\n".join(
            T.HISTORY_ENTRY.format(prompt=e.prompt, score=format_official_score(e.score)) for e in retrieved
        ) + "\n\n"
        closing = (T.EDIT_INSTRUCTION_WITH_HISTORY if edit else T.INSTRUCTION_WITH_HISTORY).format(position=position)
        intro = T.EDIT_EXEMPLARS_INTRO_WITH_HISTORY if edit else T.EXEMPLARS_INTRO
    else:
        if current_score is None:
            raise ValueError("without retrieved prompts the official meta-prompt shows the current prompt's score")
        shown = current_score if isinstance(current_score, str) else round(float(current_score), 2)
        history = T.NO_HISTORY_HEADER + T.HISTORY_ENTRY.format(
            prompt=current_prompt, score=format_official_score(shown)
        ) + "\n\n"
        closing = (T.EDIT_INSTRUCTION_WITHOUT_HISTORY if edit else T.INSTRUCTION_WITHOUT_HISTORY).format(
            position=position
        )
        intro = T.EXEMPLARS_INTRO
    text = (
        (T.EDIT_TASK if edit else T.TASK)
        + history
        + T.CURRENT.format(prompt=current_prompt)
        + intro
        + examples
        + "\n\n"
        + closing
        + (T.EDIT_OUTPUT if edit else T.OUTPUT)
    )
    return insert_budget(text, edit_budget) if budget_in_prompt else text
