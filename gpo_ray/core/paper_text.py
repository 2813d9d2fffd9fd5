"""The official GPO meta-prompt's sentences, verbatim, as data (the `paper` preset's `meta_prompt_style: paper`).

Source: github.com/RUCAIBox/GPO at commit 765df20 (the only thing reproduced from it is this text; the code that
assembles it is gpo-ray's own, in core/paper_meta_prompt.py). Each constant names the file it comes from:

- GEN  = src/optimization/utilize_gradient/generate_without_gradient.py  (Generate_Without_Gradient, "para"/k-list)
- KUPD = src/optimization/first_order_momentum/momentum_update_methods/k_update.py  (K_Update, "para")
- EDIT = src/optimization/utilize_gradient/edit_without_gradient.py  (Edit_Without_Gradient, `optimizer.update: edit`)
- WLR  = src/optimization/learning_rate/w_lr.py  (lr_template; wo_lr.py adds nothing: `budget_in_prompt: false`)
- FBG, GENG, EDG, RTU: the design-space variants (`optimizer.direction`, `optimizer.momentum`), listed further down.
"""

from __future__ import annotations

OFFICIAL_REPOSITORY = "github.com/RUCAIBox/GPO"
OFFICIAL_COMMIT = "765df20"

# GEN: first line of every meta-prompt.
TASK = "Your task is to write a prompt to replace <Prompt>.\n\n"

# KUPD: header of the retrieved prompts ("k-list" update, momentum_para_name "para").
HISTORY_HEADER = (
    "Below are the previous prompts with their scores."
    " The score ranges from 0 to 100, and higher scores indicate better quality.\n\n"
)
# KUPD: one retrieved prompt; entries joined by a blank line, the block ends with a blank line.
HISTORY_ENTRY = "Prompt: {prompt}\nScore: {score}"

# GEN: the branch without retrieved prompts (k_list_string None): the current prompt with its score.
NO_HISTORY_HEADER = (
    "Below is the current prompt with its score."
    " The score ranges from 0 to 100, and higher score indicates better quality.\n"
)

# GEN: the current prompt.
CURRENT = "The current prompt is:\n{prompt}\n\n"

# GEN: the exemplars' introduction, with the sentence on when an output counts as correct.
EXEMPLARS_INTRO = (
    "The following exemplars show how to apply the prompt: you replace <Prompt> in each input with your new prompt, "
    "then read the input and give an output. We say your output is wrong if it is different from the given output, "
    "and we say your output is correct if they are the same.\n\n"
)

# GEN: one exemplar per instruction_pos (Q_end, Q_begin, A_begin); exemplars joined by a blank line.
EXEMPLAR_Q_END = "Input:\n{question}\n<Prompt>\nOutput:\n{answer}"
EXEMPLAR_Q_BEGIN = "Input:\n<Prompt>\n{question}\nOutput:\n{answer}"
EXEMPLAR_A_BEGIN = "Input:\nQ: {question}\nA: <Prompt>\nOutput:\n{answer}"

# GEN: instruction_pos_description per instruction_pos.
POSITION_Q_END = "at the end of the question"
POSITION_Q_BEGIN = "at the beginning of the question"
POSITION_A_BEGIN = "at the beginning of the answer"

# GEN: the closing instruction with retrieved prompts, and without them.
INSTRUCTION_WITH_HISTORY = (
    "Carefully analyze the previous prompts and their scores,"
    " and write a new improved prompt"
    " to replace <Prompt> {position} in the task examples.\n"
)
INSTRUCTION_WITHOUT_HISTORY = "Write a new improved prompt to replace <Prompt> {position} in the task examples.\n"

# GEN: the last line (no trailing newline).
OUTPUT = "Wrap the new prompt with <START> and <END>."

# WLR: the edit budget, inserted before the last line as "\n" + BUDGET + "\n".
BUDGET = "You are allowed to change up to {budget} words in the current prompt.\n"

# EDIT (`optimizer.update: edit`): the sentences that differ from GEN; the history blocks, the current prompt and the
# exemplar shapes are GEN's. Note the official quirk: with retrieved prompts the exemplars' introduction says
# "with your text", without them "with your new prompt" (EXEMPLARS_INTRO).
EDIT_TASK = "Your task is to modify the current prompt to replace <Prompt>.\n\n"
EDIT_EXEMPLARS_INTRO_WITH_HISTORY = (
    "The following exemplars show how to apply the prompt: you replace <Prompt> in each input with your text, "
    "then read the input and give an output. We say your output is wrong if it is different from the given output, "
    "and we say your output is correct if they are the same.\n\n"
)
EDIT_INSTRUCTION_WITH_HISTORY = (
    "Carefully analyze the previous prompts and their scores,"
    " modify the current prompt, and get a new improved prompt"
    " to replace <Prompt> {position} in the task examples.\n"
)
EDIT_INSTRUCTION_WITHOUT_HISTORY = (
    "Modify the current prompt and get a new improved prompt to replace <Prompt>"
    " {position} in the task examples.\n"
)
EDIT_OUTPUT = "Wrap the modified prompt with <START> and <END>."

# --- The design-space variants (optimizer.direction, optimizer.momentum), same commit. Files:
# - FBG  = src/optimization/gradient/feedback_gradient.py  (Feedback_Gradient: the feedback request)
# - GENG = src/optimization/utilize_gradient/generate_based_util_gradient.py  (generation with the feedback)
# - EDG  = src/optimization/utilize_gradient/edit_based_util_gradient.py  (editing with the feedback)
# - RTU  = src/optimization/first_order_momentum/momentum_update_methods/real_time_update.py  (summarize requests)
# - KUPD (above): past feedback retrieved by the k-list is joined by a blank line, without a header.

# FBG: the request for the reasons the current prompt fails; {errors} are FEEDBACK_ERROR joined by a blank line
# (the official typo "Queston" kept).
FEEDBACK_REQUEST = (
    "Your task is to point out the problems with the current prompt based on the wrong examples.\n\n"
    "The current prompt is:\n{prompt}\n\n"
    "But this prompt gets the following examples wrong.\n"
    "You should analyze the differences between wrong predictions and ground truth answers,"
    " and carefully consider why this prompt led to incorrect predictions.\n\n"
    "Below are the task examples with Queston, Wrong prediction, and Ground truth answer.\n\n{errors}\n\n"
    "Give a reason why the prompt could have gotten these examples wrong.\n"
    "Wrap the reason with <START> and <END>."
)
FEEDBACK_ERROR = "Question: {question}\nWrong prediction: {prediction}\nGround truth answer: {answer}"
# Not in the official code: a metric spec's feedback on the example, after FEEDBACK_ERROR (gpo-ray's own metrics).
METRIC_FEEDBACK = "\nMetric feedback: {feedback}"

# GENG / EDG: the feedback block, after the current prompt.
GRADIENT_BLOCK = "Below are the problems with this prompt.\n\n{gradient}\n\n"

# GEN / EDIT / GENG / EDG, the real-time branch (momentum_update_name "real-time", "para"): the carried prompt.
PREVIOUS_HEADER = (
    "Below is the previous prompt with its score."
    " The score ranges from 0 to 100, and higher score indicates better quality.\n"
)
INSTRUCTION_WITH_PREVIOUS = (
    "Carefully analyze the previous prompt and its score,"
    " and write a new improved prompt"
    " to replace <Prompt> {position} in the task examples.\n"
)
EDIT_INSTRUCTION_WITH_PREVIOUS = (
    "Carefully analyze the previous prompt and its score,"
    " modify the current prompt, and get a new improved prompt"
    " to replace <Prompt> {position} in the task examples.\n"
)

# RTU, "para": summarize the carried prompt and the current one into a new prompt.
SUMMARIZE_PROMPTS_REQUEST = (
    "Your task is to summarize the previous and current prompt based on their scores and create a new prompt.\n"
    "The score ranges from 0 to 100, and higher score indicates better quality.\n\n"
    "Below is the previous prompt with its score.\n"
    "Prompt: {previous_prompt}\nScore: {previous_score}\n\n"
    "Below is the current prompt with its score.\n"
    "Prompt: {prompt}\nScore: {score}\n\n"
    "You should create a new prompt based on the previous and current prompt with their score.\n"
    "Wrap the created prompt with <START> and <END>."
)
# RTU, "feedback": integrate the carried problems and the current ones.
SUMMARIZE_FEEDBACK_REQUEST = (
    "Your task is to integrate the problems in the previous prompt and the current prompt.\n\n"
    "Below are the problems that arose from the previous prompts.\n"
    "{previous}\n\n"
    "Below are the problems of the current prompt.\n"
    "{current}\n\n"
    "You should integrate the problems of the previous prompt and the current prompt.\n"
    "Wrap the integrated problems with <START> and <END>."
)
