"""The paper's answer extraction: a second chat turn that asks the task model for its final answer.

With `answer_extraction: second_turn`, the task model's first reply is kept as an assistant turn and a
user turn asks for the answer in the task's form ("Directly tell me your answer using only "Yes" or
"No"."); the reply to that turn, stripped, is what gets scored. The sentences below are the official
GPO code's, reproduced verbatim as data (see SOURCE); the code around them is gpo-ray's own.

Which sentence a task gets is decided by its name ("bbh/navigate", "mmlu/anatomy", "gsm8k", "wsc").
A task the official code does not know gets the sentence of its metric kind when it has one (multiple
choice, numeric) and no second turn otherwise; WebNLG has none in the official code either (it is
scored by ROUGE-L on the first reply).
"""

from __future__ import annotations

import re

from gpo_ray.vocabulary import MetricKind

SOURCE = "github.com/RUCAIBox/GPO @ 765df208a3856797cf66491a4a9fc56264a67495, src/evaluation/eval_utils.py, get_second_round_prompt"

# The official code sends the second turn with max_decode_steps=100 (eval_utils.evaluate_single_instruction).
SECOND_TURN_MAX_TOKENS = 100

# --- verbatim from SOURCE -------------------------------------------------------------------
TRUE_FALSE = """Directly tell me your answer using only "True" or "False"."""
YES_NO = """Directly tell me your answer using only "Yes" or "No"."""
VALID_INVALID = """Directly tell me your answer using only "valid" or "invalid"."""
OPTION_AMONG = "Therefore, summarize your answer with an option among (A) and {end_choice}."
NUMBER = """Therefore, summarize your final answer with just one number in your response."""
DYCK = """Directly output the newly added parentheses that make the parentheses close correctly."""
WORD_SORTING = (
    """Directly output the result of sorting the words alphabetically, separating each word with a space."""
)
MMLU = "Therefore, summarize your answer with an option among (A) and (D)."
WSC = "Therefore, summarize your answer with an option between (A) and (B)."
# --- end of verbatim text -------------------------------------------------------------------

# Task groups of the official src/dataset/bbh.py (paper_metrics.py scores by them too).
_BBH_YES_NO = frozenset({"causal_judgement", "navigate", "sports_understanding", "web_of_lies"})
BBH_BOOL_TASKS = _BBH_YES_NO | {"boolean_expressions", "formal_fallacies"}
BBH_NUMBER_TASKS = frozenset({"multistep_arithmetic_two", "object_counting"})
BBH_CHOICE_TASKS = frozenset({
    "date_understanding", "disambiguation_qa", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects", "logical_deduction_three_objects",
    "movie_recommendation", "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "temporal_sequences",
    "tracking_shuffled_objects_five_objects", "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
})  # fmt: skip  # also the official bbh.py multiple_choice_tasks
_BBH_FIXED = {
    "boolean_expressions": TRUE_FALSE,
    "formal_fallacies": VALID_INVALID,
    "dyck_languages": DYCK,
    "word_sorting": WORD_SORTING,
} | dict.fromkeys(BBH_NUMBER_TASKS, NUMBER) | dict.fromkeys(_BBH_YES_NO, YES_NO)

BRACKETED = re.compile(r"\([A-Za-z]\)")


def end_choice(question: str) -> str:
    """The last option of a multiple-choice question as the official code finds it.

    It takes the question's last line and, when that line holds a bracketed letter, the first one
    ("(E) Kyoto" -> "(E)"); otherwise the line itself (a quirk kept as is).
    """
    lines = question.rstrip("\n").split("\n")
    last = lines[-1] if lines else ""
    found = BRACKETED.search(last)
    return found.group(0) if found else last


def paper_end_choice(first_turn: str, *, placement_end: bool) -> str:
    """The last option as the official code reads it with `end_choice: paper`: from the first turn's text (question
    and prompt), its second-to-last line when the prompt follows the question (Q_end), else its last line (Q_begin);
    so with a prompt of several lines, a line of the prompt. The first bracketed letter of that line, else the line.
    (A one-line first turn with Q_end makes the official code raise IndexError; here it reads that line.)"""
    lines = first_turn.split("\n")
    line = lines[-2] if placement_end and len(lines) >= 2 else lines[-1]
    found = BRACKETED.search(line)
    return found.group(0) if found else line


def second_turn_text(
    task_name: str, metric: MetricKind, question: str, *, choice: str | None = None
) -> str | None:
    """The user turn that asks for the final answer, or None when the task gets no second turn. `choice`: the last
    option to name for a multiple-choice task (end_choice paper), else found in the question (`end_choice`). A task
    scored by a metric spec (python, checks) has none: its metric reads the reply as it is."""
    if not isinstance(metric, str):  # MetricKind is a str; a spec is not
        return None
    family, _, sub = task_name.partition("/")
    last = choice
    if family == "bbh":
        if sub in _BBH_FIXED:
            return _BBH_FIXED[sub]
        if sub in BBH_CHOICE_TASKS:
            return OPTION_AMONG.format(end_choice=last if last is not None else end_choice(question))
    elif family == "mmlu":
        return MMLU
    elif task_name == "wsc":
        return WSC
    elif task_name == "gsm8k":
        return NUMBER
    elif task_name == "webnlg":
        return None
    metric = MetricKind(metric)
    if metric is MetricKind.MULTIPLE_CHOICE:
        return OPTION_AMONG.format(end_choice=last if last is not None else end_choice(question))
    if metric is MetricKind.NUMERIC:
        return NUMBER
    return None


def answer_for_parsing(reply: str) -> str:
    """The second-turn reply as the official code passes it on to normalisation: stripped."""
    return reply.strip()
