"""The official GPO meta-prompt (`optimizer.meta_prompt_style: paper`), assembled from core/paper_text.py.

For the same state (current prompt, retrieved prompts with their scores in the order given, exemplars, budget, prompt
placement) `build_paper_meta_prompt` returns the text the official code (RUCAIBox/GPO at 765df20, GPO.sh settings:
momentum_para_name "para", momentum_update_name "k-list", util_gradient_name "generate_without", learning_rate_name
"w_lr") sends to its optimizer, byte for byte. The assembly is ours; see tests/unit/test_core_paper_meta_prompt.py.

The design-space variants (core/variants.py) use the same assembly: the feedback block (`gradient`), the real-time
branch (`previous`), and the feedback and summarize requests; tests/unit/test_core_paper_meta_prompt_variants.py
checks them against the official code's output.

Quirks reproduced on purpose (docs/paper-preset.md):
- a score is printed as the official code prints its eval mean, a [0, 1] float in Python's shortest repr
  (``0.4791666666666667``), under a header that says scores range from 0 to 100;
- the budget line goes before the last line, followed by an empty line;
- the exemplars are not clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpo_ray.core import paper_text as T
from gpo_ray.core.types import TrajectoryEntry, WrongExample
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


def _rounded(score: float | str) -> float | str:
    """round(score, 2), as optimize.py rounds the score it shows next to a single prompt; a str passes through."""
    return score if isinstance(score, str) else round(float(score), 2)


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
    gradient: str | None = None,
    previous: TrajectoryEntry | None = None,
) -> str:
    """The official meta-prompt; `retrieved` is shown in the order given (the official selection methods' order).

    Without retrieved prompts, the official branch that shows the current prompt with its score (rounded to 2
    places, as the official code rounds it there); the GPO.sh configuration always has the k-list, which holds at
    least the initial prompt.

    `update`: "generate" (generate_without_gradient.py) or "edit" (edit_without_gradient.py); `budget_in_prompt`:
    w_lr (the budget line) or wo_lr (the text as is).

    `gradient` (optimizer.direction feedback): the problems block of generate_based_util_gradient.py /
    edit_based_util_gradient.py; `previous` (optimizer.momentum.update summarize over prompts): the real-time branch,
    the carried prompt with its score (rounded to 2 places, as real_time_update.py's caller stores it)."""
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
    if previous is not None:
        if retrieved:
            raise ValueError("the official meta-prompt has either retrieved prompts or a carried previous prompt")
        history = T.PREVIOUS_HEADER + T.HISTORY_ENTRY.format(
            prompt=previous.prompt, score=format_official_score(_rounded(previous.score))
        ) + "\n\n"
        closing = (T.EDIT_INSTRUCTION_WITH_PREVIOUS if edit else T.INSTRUCTION_WITH_PREVIOUS).format(position=position)
        intro = T.EDIT_EXEMPLARS_INTRO_WITH_HISTORY if edit and gradient is None else T.EXEMPLARS_INTRO
    elif retrieved:
        history = T.HISTORY_HEADER + "\n\n".join(
            T.HISTORY_ENTRY.format(prompt=e.prompt, score=format_official_score(e.score)) for e in retrieved
        ) + "\n\n"
        closing = (T.EDIT_INSTRUCTION_WITH_HISTORY if edit else T.INSTRUCTION_WITH_HISTORY).format(position=position)
        # edit_without_gradient.py says "with your text" here; edit_based_util_gradient.py "with your new prompt".
        intro = T.EDIT_EXEMPLARS_INTRO_WITH_HISTORY if edit and gradient is None else T.EXEMPLARS_INTRO
    else:
        if current_score is None:
            raise ValueError("without retrieved prompts the official meta-prompt shows the current prompt's score")
        history = T.NO_HISTORY_HEADER + T.HISTORY_ENTRY.format(
            prompt=current_prompt, score=format_official_score(_rounded(current_score))
        ) + "\n\n"
        closing = (T.EDIT_INSTRUCTION_WITHOUT_HISTORY if edit else T.INSTRUCTION_WITHOUT_HISTORY).format(
            position=position
        )
        intro = T.EXEMPLARS_INTRO
    text = (
        (T.EDIT_TASK if edit else T.TASK)
        + history
        + T.CURRENT.format(prompt=current_prompt)
        + (T.GRADIENT_BLOCK.format(gradient=gradient) if gradient is not None else "")
        + intro
        + examples
        + "\n\n"
        + closing
        + (T.EDIT_OUTPUT if edit else T.OUTPUT)
    )
    return insert_budget(text, edit_budget) if budget_in_prompt else text


def build_paper_feedback_request(*, current_prompt: str, wrong: Sequence[WrongExample]) -> str:
    """feedback_gradient.py's request: the current prompt and the training batch's wrong examples, in the order
    given (an empty list gives the official text with no examples, which the official code sends too). A metric spec's
    feedback on an example (beyond the paper) follows it; the built-in metrics give none, so the text is the paper's."""
    errors = "\n\n".join(
        T.FEEDBACK_ERROR.format(question=w.question, prediction=w.prediction, answer=w.answer)
        + (T.METRIC_FEEDBACK.format(feedback=w.feedback) if w.feedback else "")
        for w in wrong
    )
    return T.FEEDBACK_REQUEST.format(prompt=current_prompt, errors=errors)


def build_paper_summarize_prompts_request(*, previous: TrajectoryEntry, current: TrajectoryEntry) -> str:
    """real_time_update.py, "para": both scores rounded to 2 places, as optimize.py passes them."""
    return T.SUMMARIZE_PROMPTS_REQUEST.format(
        previous_prompt=previous.prompt, previous_score=format_official_score(_rounded(previous.score)),
        prompt=current.prompt, score=format_official_score(_rounded(current.score)),
    )


def build_paper_summarize_feedback_request(*, previous: str, current: str) -> str:
    """real_time_update.py, "feedback": the carried problems and the current step's."""
    return T.SUMMARIZE_FEEDBACK_REQUEST.format(previous=previous, current=current)
