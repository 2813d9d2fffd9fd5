"""The meta-prompt's sentences in gpo-ray's own style (`meta_prompt_style: own`): core/meta_prompt.py and
core/variants.py build the requests from them; `optimizer.meta_prompt` in a config overrides any of them by name
(the schema checks the names against this template's fields)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetaPromptTemplate:
    """The meta-prompt's sentences (core/meta_prompt.py builds it); override any of them with `dataclasses.replace`,
    or in a config by `optimizer.meta_prompt`, which is checked against these fields.

    Every string is a str.format template (write literal braces doubled), even those without fields.
    """

    task: str = (
        "Your job is to write a new prompt for a language model. In the task examples below, the "
        "placeholder <PROMPT> marks where the prompt is inserted; your prompt will replace it. "
        "A good prompt makes the model give the correct answer as often as possible."
    )
    history_intro: str = (
        "Here are earlier prompts for this task with their scores, from lowest to highest. "
        "Scores range from 0 to 100; higher is better."
    )
    history_entry: str = "Prompt: {prompt}\nscore: {score}/100"
    current_intro: str = "This is the current prompt, the one to improve:"
    examples_intro: str = "Here are some examples of the task. <PROMPT> shows where the prompt is placed."
    example_end: str = "Q: {input}\n<PROMPT>"
    example_beginning: str = "<PROMPT>\nQ: {input}"
    example_system: str = "System: <PROMPT>\nQ: {input}"
    example_answer: str = "A: {answer}"
    instruction: str = (
        "Analyse the examples and the earlier prompts: notice what the higher-scoring prompts do "
        "that the lower-scoring ones do not. Then write a new prompt that is different from all "
        "the prompts above and should score higher than all of them."
    )
    budget: str = "You may change up to {budget} words of the current prompt."
    output_markers: str = "Write the new prompt between <START> and <END>."
    output_json: str = (
        'Reply with only a JSON object of the form {{"prompt": "..."}}, whose "prompt" value is the new prompt.'
    )
    # `optimizer.update: edit`: these replace task, instruction and the output line.
    edit_task: str = (
        "Your job is to improve a prompt for a language model by editing it. In the task examples below, the "
        "placeholder <PROMPT> marks where the prompt is inserted; your edited prompt will replace it. "
        "A good prompt makes the model give the correct answer as often as possible."
    )
    edit_instruction: str = (
        "Analyse the examples and the earlier prompts: notice what the higher-scoring prompts do "
        "that the lower-scoring ones do not. Then edit the current prompt: keep what works, change what "
        "does not, so that the edited prompt is different from all the prompts above and should score higher "
        "than all of them."
    )
    edit_output_markers: str = "Write the edited prompt between <START> and <END>."
    edit_output_json: str = (
        'Reply with only a JSON object of the form {{"prompt": "..."}}, whose "prompt" value is the edited prompt.'
    )
    # `optimizer.direction: feedback`: the request for the reasons the current prompt fails (core/variants.py), and
    # the problems block then shown in the meta-prompt.
    feedback_task: str = (
        "Your job is to find out why a prompt for a language model fails. The model was given the prompt below "
        "together with each question of a few task examples, and answered the questions shown further down wrongly."
    )
    feedback_examples_intro: str = "These are the examples it got wrong, with the model's answer and the correct one:"
    feedback_entry: str = "Question: {question}\nModel's answer: {prediction}\nCorrect answer: {answer}"
    # After an entry, when the task's metric (a spec) said what was wrong with the answer.
    feedback_metric: str = "What the metric found: {feedback}"
    feedback_none: str = "(none: the model answered every example correctly)"
    feedback_instruction: str = (
        "Compare the model's answers with the correct ones and explain what in the prompt led the model to "
        "answer wrongly. Be specific and brief."
    )
    feedback_output: str = "Write your explanation between <START> and <END>."
    problems_intro: str = "An analysis of why the current prompt fails on some examples:"
    problems_instruction: str = "Make sure the new prompt fixes the problems found in the analysis."
    # `optimizer.momentum.update: summarize`: the prompt carried from the steps before, and the requests that
    # merge it (or the carried problems) with the current step's.
    previous_intro: str = (
        "Here is a prompt carried over from the earlier steps with its score. Scores range from 0 to 100; "
        "higher is better."
    )
    summarize_prompts_task: str = (
        "Your job is to merge two prompts for a language model into one prompt that should score higher than both. "
        "Scores range from 0 to 100; higher is better."
    )
    summarize_previous_intro: str = "The prompt carried over from the earlier steps:"
    summarize_current_intro: str = "The current prompt:"
    summarize_score: str = "Its score: {score}/100"
    summarize_prompts_instruction: str = (
        "Write one new prompt that keeps what makes the higher-scoring prompt work and adds what the other does well."
    )
    summarize_prompts_output: str = "Write the new prompt between <START> and <END>."
    summarize_feedback_task: str = "Your job is to merge two analyses of a prompt's problems into one."
    summarize_feedback_previous_intro: str = "Problems found with the earlier prompts:"
    summarize_feedback_current_intro: str = "Problems found with the current prompt:"
    summarize_feedback_instruction: str = (
        "Write one analysis that keeps every problem that still matters and says each only once."
    )
    summarize_feedback_output: str = "Write the merged analysis between <START> and <END>."
    max_input_chars: int = 600
    max_answer_chars: int = 300

