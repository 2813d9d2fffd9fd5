"""The optimizer design-space variants beyond the k-list of past prompts: the feedback direction and the momentum
over past feedback or by summarizing (`optimizer.direction`, `optimizer.momentum`), as the official GPO code
(RUCAIBox/GPO at 765df20, src/optimization/) defines them.

- direction feedback (gradient/feedback_gradient.py): the current prompt is scored on the step's training batch,
  the examples it gets wrong (score 0) are shown with the task model's answer and the reference, and the optimizer is
  asked (temperature 0, one call) why the prompt got them wrong; the reply between <START> and <END> is the step's
  feedback, shown in the meta-prompt (utilize_gradient/*_based_util_gradient.py).
- momentum over feedback, retrieve (k_update.py with a selection method): the step's feedback and up to k past ones,
  joined by a blank line, replace it in the meta-prompt; summarize (real_time_update.py): the carried problems and
  the step's are merged by one more optimizer call (from the second step on) into the new carried problems.
- momentum over prompts, summarize: the carried prompt and the current one are merged into a new carried prompt by
  one optimizer call (from the second step on); the meta-prompt shows it as "the previous prompt" with the current
  prompt's score (optimize.py scores `update_instruction`, the current prompt, for the summary: reproduced).

Pure: the requests' texts, the reply's extraction, the selection of past feedback. The loop (core/loop.py) makes the
calls through its services.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpo_ray.config import MetaPromptTemplate
from gpo_ray.core.extraction import extract_paper_candidate
from gpo_ray.core.meta_prompt import (
    CURRENT_PROMPT_CLOSE,
    CURRENT_PROMPT_OPEN,
    DEFAULT_TEMPLATE,
    clip_text,
    format_score,
    without_answer,
)
from gpo_ray.core.retrieval import cosine_similarity
from gpo_ray.core.types import TrajectoryEntry, WrongExample
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import Purpose

# Byte-exact blocks of the own-style requests (not overridable): tools and the fake test server find what a request
# holds by them, as the current prompt by the meta-prompt's <current_prompt> block (what the request is for, the fake
# reads from its purpose; only a request sent without one is told apart by these).
WRONG_EXAMPLES_OPEN, WRONG_EXAMPLES_CLOSE = "<wrong_examples>", "</wrong_examples>"
PREVIOUS_PROMPT_OPEN, PREVIOUS_PROMPT_CLOSE = "<previous_prompt>", "</previous_prompt>"
LATEST_PROMPT_OPEN, LATEST_PROMPT_CLOSE = "<latest_prompt>", "</latest_prompt>"
PREVIOUS_PROBLEMS_OPEN, PREVIOUS_PROBLEMS_CLOSE = "<previous_problems>", "</previous_problems>"
CURRENT_PROBLEMS_OPEN, CURRENT_PROBLEMS_CLOSE = "<current_problems>", "</current_problems>"

# What the optimizer is asked for besides candidates (the `purpose` of an OptimizerTextRequest, the counts' names,
# and the request's X-GPO-Purpose header: the vocabulary's words, as plain strings).
FEEDBACK = Purpose.FEEDBACK.value
SUMMARIZE = Purpose.SUMMARIZE.value


def _block(open_tag: str, text: str, close_tag: str) -> str:
    return f"{open_tag}\n{text}\n{close_tag}"


def wrong_examples(batch: Sequence[Example], graded: Sequence[tuple], *, below: float | None = None
                   ) -> list[WrongExample]:
    """The examples scored 0 (feedback_gradient.py: accuracy == 0.0), or with `below` scored below it, in batch order,
    with the model's answer and, where `graded` carries it as a third item, the metric's feedback."""
    if len(batch) != len(graded):
        raise ValueError(f"got {len(graded)} grades for {len(batch)} examples")
    return [
        WrongExample(question=ex.input, prediction=prediction, answer=ex.answers[0] if ex.answers else None,
                     feedback=rest[0] if rest else None)
        for ex, (score, prediction, *rest) in zip(batch, graded, strict=True)
        if (score == 0.0 if below is None else score < below)
    ]


def extract_reply(raw: str, start: str = "<START>", end: str = "<END>") -> str:
    """optimize.py's extract_text then eval_utils.polish_sentence, as for candidates (core/extraction.py)."""
    return extract_paper_candidate(raw, start_marker=start, end_marker=end)


def select_feedback(
    history: Sequence[tuple[str, float]],
    *,
    strategy: str,
    k: int,
    vectors: Sequence[Sequence[float]] | None = None,
) -> list[str]:
    """Past feedback as the official selection methods pick it for momentum_para_name "feedback".

    `history` is (feedback, improvement) in step order, the step's own feedback last (its improvement not known yet);
    improvement is the eval score the step's move gained. recency: the last k, newest first; importance: the newest,
    then the k best of the others (ties: the older first); relevance: the newest, then the k-1 older most similar to
    it (numpy's reversed argsort: ties the older first)."""
    if not history:
        return []
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    texts = [text for text, _ in history]
    if strategy == "recency":
        return texts[-k:][::-1]
    newest, older = len(history) - 1, list(range(len(history) - 1))
    if strategy == "importance":
        best = sorted(older, key=lambda i: -history[i][1])[:k]  # stable: ties keep step order
        return [texts[newest], *(texts[i] for i in best)]
    if strategy == "relevance":
        if vectors is None or len(vectors) != len(history):
            raise ValueError("relevance selection of feedback needs one embedding vector per feedback")
        candidates = older[::-1]  # newest first, as history_list[:-1][::-1]
        similarity = [cosine_similarity(vectors[newest], vectors[i]) for i in candidates]
        ranked = sorted(range(len(candidates)), key=lambda j: similarity[j])[::-1][: k - 1]
        return [texts[newest], *(texts[candidates[j]] for j in ranked)]
    raise ValueError(f"unknown selection strategy {strategy!r}")


def join_feedback(selected: Sequence[str]) -> str:
    """k_update.py for "feedback": the selected feedback joined by a blank line, no header (both styles)."""
    return "\n\n".join(selected)


# --- the requests in gpo-ray's own words (the paper's: core/paper_meta_prompt.py; which one: core/design/style.py) -


def build_feedback_request(
    *, current_prompt: str, wrong: Sequence[WrongExample], template: MetaPromptTemplate = DEFAULT_TEMPLATE
) -> str:
    """gpo-ray's own wording of the feedback request (direction feedback, meta_prompt_style own)."""
    entries = [
        (template.feedback_entry if w.answer is not None else without_answer(template.feedback_entry)).format(
            question=clip_text(w.question, template.max_input_chars),
            prediction=clip_text(w.prediction, template.max_answer_chars),
            answer=clip_text(w.answer or "", template.max_answer_chars),
        ) + ("\n" + template.feedback_metric.format(feedback=clip_text(w.feedback, template.max_answer_chars))
             if w.feedback else "")
        for w in wrong
    ]
    listed = "\n\n".join(entries) if entries else template.feedback_none.format()
    return "\n\n".join([
        template.feedback_task.format(),
        template.current_intro.format() + "\n" + _block(CURRENT_PROMPT_OPEN, current_prompt, CURRENT_PROMPT_CLOSE),
        template.feedback_examples_intro.format() + "\n" + _block(WRONG_EXAMPLES_OPEN, listed, WRONG_EXAMPLES_CLOSE),
        template.feedback_instruction.format(),
        template.feedback_output.format(),
    ])


def build_summarize_prompts_request(
    *, previous: TrajectoryEntry, current: TrajectoryEntry, template: MetaPromptTemplate = DEFAULT_TEMPLATE
) -> str:
    """gpo-ray's own wording of the request that merges the carried prompt and the current one."""
    return "\n\n".join([
        template.summarize_prompts_task.format(),
        template.summarize_previous_intro.format() + "\n"
        + _block(PREVIOUS_PROMPT_OPEN, previous.prompt, PREVIOUS_PROMPT_CLOSE) + "\n"
        + template.summarize_score.format(score=format_score(previous.score)),
        template.summarize_current_intro.format() + "\n"
        + _block(LATEST_PROMPT_OPEN, current.prompt, LATEST_PROMPT_CLOSE) + "\n"
        + template.summarize_score.format(score=format_score(current.score)),
        template.summarize_prompts_instruction.format(),
        template.summarize_prompts_output.format(),
    ])


def build_summarize_feedback_request(
    *, previous: str, current: str, template: MetaPromptTemplate = DEFAULT_TEMPLATE
) -> str:
    """gpo-ray's own wording of the request that merges the carried problems and the step's."""
    return "\n\n".join([
        template.summarize_feedback_task.format(),
        template.summarize_feedback_previous_intro.format() + "\n"
        + _block(PREVIOUS_PROBLEMS_OPEN, previous, PREVIOUS_PROBLEMS_CLOSE),
        template.summarize_feedback_current_intro.format() + "\n"
        + _block(CURRENT_PROBLEMS_OPEN, current, CURRENT_PROBLEMS_CLOSE),
        template.summarize_feedback_instruction.format(),
        template.summarize_feedback_output.format(),
    ])
