"""The meta-prompt: what the optimizer LLM reads at each GPO step.

It follows the paper's structure, in our own words:

(a) the job: write a new prompt that replaces the placeholder <PROMPT> in the task examples;
(b) the retrieved past prompts with their scores (0-100), worst first and best last;
(c) the current prompt, in a fixed ``<current_prompt>`` block;
(d) a few task examples showing where the prompt sits (END, BEGINNING or SYSTEM placement);
(e) an instruction to analyse all of this and write a better prompt;
(f) the edit budget: "You may change up to N words of the current prompt." (left out with `budget_in_prompt: false`);
(g) the output format: between <START> and <END>, or a JSON object {"prompt": "..."}.

With `optimizer.update: edit`, (a), (e) and (g) ask to edit the current prompt instead (the `edit_*` sentences).

Every sentence lives in `MetaPromptTemplate` and can be overridden, except the current-prompt block,
which is byte-exact on purpose: tools (and the fake test server) find the current prompt by it. What a request is
for travels beside it (`ChatRequest.purpose`, the X-GPO-Purpose header), so no sentence of it has to stay fixed.
Example text is clipped so that a meta-prompt stays small whatever the task's inputs look like.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpo_ray.config import MetaPromptTemplate
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

PLACEHOLDER = "<PROMPT>"
START_MARKER = "<START>"
END_MARKER = "<END>"
CURRENT_PROMPT_OPEN = "<current_prompt>"
CURRENT_PROMPT_CLOSE = "</current_prompt>"
_CURRENT_PROMPT_BLOCK = CURRENT_PROMPT_OPEN + "\n{prompt}\n" + CURRENT_PROMPT_CLOSE

# JSON schema for structured (constrained) optimizer output. A constant: copy before changing it.
CANDIDATE_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 1}},
    "required": ["prompt"],
    "additionalProperties": False,
}


DEFAULT_TEMPLATE = MetaPromptTemplate()


def clip_text(text: str, limit: int) -> str:
    """At most `limit` characters of the stripped text, "..." marking a cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + "..."


def format_score(score: float | str) -> str:
    """A [0, 1] score as the optimizer sees it: a whole number out of 100. A str passes through (the placeholder
    `plan --show-meta-prompt` shows before any score exists)."""
    if isinstance(score, str):
        return score
    return str(round(score * 100))


def render_example(
    example: Example, *, placement: PromptPlacement, template: MetaPromptTemplate = DEFAULT_TEMPLATE
) -> str:
    """One task example with <PROMPT> where the prompt goes, followed by its answer."""
    shape = {
        PromptPlacement.END: template.example_end,
        PromptPlacement.BEGINNING: template.example_beginning,
        PromptPlacement.SYSTEM: template.example_system,
    }[PromptPlacement(placement)]
    question = shape.format(input=clip_text(example.input, template.max_input_chars))
    if not example.answers:  # a task without references: the input alone shows the format
        return question
    answer = template.example_answer.format(answer=clip_text(example.answer, template.max_answer_chars))
    return f"{question}\n{answer}"


def without_answer(entry: str) -> str:
    """A template's entry without its lines that show the reference answer: for a task that has none."""
    return "\n".join(line for line in entry.split("\n") if "{answer}" not in line)


def build_meta_prompt(
    *,
    current_prompt: str,
    retrieved: Sequence[TrajectoryEntry],
    format_examples: Sequence[Example],
    edit_budget: int,
    placement: PromptPlacement,
    structured: bool,
    template: MetaPromptTemplate = DEFAULT_TEMPLATE,
    update: str = "generate",
    budget_in_prompt: bool = True,
    gradient: str | None = None,
    previous: TrajectoryEntry | None = None,
) -> str:
    """The full meta-prompt for one optimizer call; `retrieved` is shown in the order given.

    `update` "edit" asks to modify the current prompt (edit_task, edit_instruction, edit_output_*) instead of writing
    a new one; `budget_in_prompt` False leaves out the budget line (f). `gradient` (direction feedback) adds the
    analysis after the current prompt and asks to fix it; `previous` (momentum summarize over prompts) shows the
    carried prompt with its score in place of retrieved ones."""
    if update not in ("generate", "edit"):
        raise ValueError(f"update must be generate or edit, got {update!r}")
    edit = update == "edit"
    if edit_budget < 0:
        raise ValueError(f"edit_budget must be >= 0, got {edit_budget}")
    sections = [(template.edit_task if edit else template.task).format()]
    if retrieved:
        entries = [
            template.history_entry.format(prompt=entry.prompt, score=format_score(entry.score)) for entry in retrieved
        ]
        sections.append(template.history_intro.format() + "\n\n" + "\n\n".join(entries))
    if previous is not None:
        sections.append(template.previous_intro.format() + "\n\n"
                        + template.history_entry.format(prompt=previous.prompt, score=format_score(previous.score)))
    sections.append(template.current_intro.format() + "\n" + _CURRENT_PROMPT_BLOCK.format(prompt=current_prompt))
    if gradient is not None:
        sections.append(template.problems_intro.format() + "\n\n" + gradient)
    if format_examples:
        rendered = [render_example(ex, placement=placement, template=template) for ex in format_examples]
        sections.append(template.examples_intro.format() + "\n\n" + "\n\n".join(rendered))
    sections.append((template.edit_instruction if edit else template.instruction).format())
    if gradient is not None:
        sections.append(template.problems_instruction.format())
    if budget_in_prompt:
        sections.append(template.budget.format(budget=edit_budget))
    if edit:
        sections.append((template.edit_output_json if structured else template.edit_output_markers).format())
    else:
        sections.append((template.output_json if structured else template.output_markers).format())
    return "\n\n".join(sections)
