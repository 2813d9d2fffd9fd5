"""The rival optimizers' meta-prompts as data, each with its source, and their renderers (`optimizer.method`).

Verbatim where the method's public code holds the text (commit named), as core/paper_text.py does for GPO:

- APE (Zhou et al. 2023, "Large Language Models Are Human-Level Prompt Engineers"): keirp/automatic_prompt_engineer
  at eac521c, automatic_prompt_engineer/ape.py `get_simple_prompt_gen_template` (forward mode) and `simple_ape`'s
  demos_template. The completion model fills `[APE]`; a chat model is sent the text up to it (the code's
  GPT_forward generates with `[APE]` removed) and its reply is the instruction. The iterative variant's resampling
  request is the APE paper's (§3.1, "Iterative Monte Carlo Search"), which the ProTeGi code below uses verbatim.
- APO/ProTeGi (Pryzant et al. 2023, "Automatic Prompt Optimization with 'Gradient Descent' and Beam Search"):
  microsoft/LMOps at 4f2a9de, prompt_optimization/optimizers.py: `_sample_error_str`, `_get_gradients`,
  `apply_gradient` (their f-strings after the code's own `line.lstrip()` of every line), `generate_synonyms`.
- OPRO (Yang et al. 2024, "Large Language Models as Optimizers"): google-deepmind/opro at e81b2f5,
  opro/optimization/opt_utils.py `gen_meta_prompt` for a GPT optimizer (gpt-3.5-turbo / gpt-4), meta_prompt_type
  both_instructions_and_exemplars, include_qa False (optimize_instructions.py's setting for GPT scorers),
  instructions before exemplars, 100 score buckets; `gen_ins_and_score_pairs_substr` for the scored instructions.

Pure: texts in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

# --- APE ----------------------------------------------------------------------------------------------------------
APE_SOURCE = "keirp/automatic_prompt_engineer@eac521c automatic_prompt_engineer/ape.py"
APE_FORWARD_TEMPLATE = (
    "I gave a friend an instruction. Based on the instruction they produced the following input-output pairs:\n\n"
    "[full_DEMO]\n\nThe instruction was to [APE]"
)
APE_DEMOS_TEMPLATE = "Input: [INPUT]\nOutput: [OUTPUT]"
APE_RESAMPLE_SOURCE = "APE paper §3.1; microsoft/LMOps@4f2a9de prompt_optimization/optimizers.py generate_synonyms"
RESAMPLE_TEMPLATE = "Generate a variation of the following instruction while keeping the semantic meaning.\n\nInput: {prompt}\n\nOutput:"


def ape_demos(demos: Sequence[Example]) -> str:
    """The demos block: each pair in APE's demos_template, joined by a blank line (template.DemosTemplate.fill)."""
    return "\n\n".join(
        APE_DEMOS_TEMPLATE.replace("[INPUT]", d.input).replace("[OUTPUT]", d.answers[0] if d.answers else "")
        for d in demos
    )


def ape_forward_request(demos: Sequence[Example]) -> str:
    """APE's forward-mode generation request as a chat model gets it: the template up to [APE]."""
    return APE_FORWARD_TEMPLATE.replace("[full_DEMO]", ape_demos(demos)).replace("[APE]", "")


def resample_request(prompt: str) -> str:
    """APE's resampling (and ProTeGi's Monte Carlo paraphrase) request for one instruction."""
    return RESAMPLE_TEMPLATE.format(prompt=prompt)


# --- APO / ProTeGi ------------------------------------------------------------------------------------------------
APO_SOURCE = "microsoft/LMOps@4f2a9de prompt_optimization/optimizers.py"
APO_GRADIENT_TEMPLATE = (
    "\nI'm trying to write a zero-shot classifier prompt.\n\nMy current prompt is:\n\"{prompt}\"\n\n"
    "But this prompt gets the following examples wrong:\n{error_string}\n\n"
    "give {num_feedbacks} reasons why the prompt could have gotten these examples wrong.\n"
    "Wrap each reason with <START> and <END>\n"
)
APO_EDIT_TEMPLATE = (
    "\nI'm trying to write a zero-shot classifier.\n\nMy current prompt is:\n\"{prompt}\"\n\n"
    "But it gets the following examples wrong:\n{error_str}\n\n"
    "Based on these examples the problem with this prompt is that {feedback_str}\n\n"
    "Based on the above information, I wrote {steps_per_gradient} different improved prompts.\n"
    "Each prompt is wrapped with <START> and <END>.\n\n"
    "The {steps_per_gradient} new prompts are:\n"
)


def apo_error_string(errors: Sequence[tuple[str, str, str]]) -> str:
    """`_sample_error_str`'s block for (text, label, prediction) triples, in the order given."""
    out = ""
    for i, (text, label, prediction) in enumerate(errors):
        out += f"## Example {i + 1}\n"
        out += f'Text: "{text.strip()}"\nLabel: {label}\nPrediction: {prediction}\n\n'
    return out.strip()


def _lstripped(text: str) -> str:
    """The code's `'\n'.join([line.lstrip() for line in text.split('\n')])`, applied after formatting."""
    return "\n".join(line.lstrip() for line in text.split("\n"))


def apo_gradient_request(prompt: str, error_string: str, num_feedbacks: int) -> str:
    return _lstripped(APO_GRADIENT_TEMPLATE.format(prompt=prompt, error_string=error_string,
                                                   num_feedbacks=num_feedbacks))


def apo_edit_request(prompt: str, error_str: str, feedback_str: str, steps_per_gradient: int) -> str:
    return _lstripped(APO_EDIT_TEMPLATE.format(prompt=prompt, error_str=error_str, feedback_str=feedback_str,
                                               steps_per_gradient=steps_per_gradient))


def parse_tagged_text(text: str, start_tag: str = "<START>", end_tag: str = "<END>") -> list[str]:
    """ProTeGi's `parse_tagged_text`: every span between a start tag and the next end tag, stripped."""
    texts = []
    while True:
        start = text.find(start_tag)
        if start == -1:
            break
        end = text.find(end_tag, start)
        if end == -1:
            break
        texts.append(text[start + len(start_tag):end].strip())
        text = text[end + len(end_tag):]
    return texts


# --- OPRO ---------------------------------------------------------------------------------------------------------
OPRO_SOURCE = "google-deepmind/opro@e81b2f5 opro/optimization/opt_utils.py gen_meta_prompt (GPT optimizer)"
OPRO_OLD_INSTRUCTIONS_INTRO = (
    "Your task is to generate the instruction <INS>. Below are some previous instructions with their scores."
    " The score ranges from 0 to 100.\n"
)
OPRO_EXEMPLARS_INTRO = "Below are some problems.\n"
OPRO_INSTRUCTION_REQUEST = (
    "\n\nGenerate an instruction that is different from all the instructions <INS> above, and has a higher score"
    " than all the instructions <INS> above. The instruction should begin with <INS> and end with </INS>."
    " The instruction should be concise, effective, and generally applicable to all problems above."
)
OPRO_MAX_INSTRUCTIONS = 20  # optimize_instructions.py: max_num_instructions
OPRO_SCORE_BUCKETS = 100  # num_score_buckets
OPRO_SCORE_THRESHOLD = 0.3  # old_instruction_score_threshold for GPT scorers
OPRO_EXEMPLARS = 3  # num_few_shot_questions_for_instruction_refinement


def opro_shown(history: Sequence[tuple[str, float]], *, max_instructions: int = OPRO_MAX_INSTRUCTIONS,
               threshold: float = OPRO_SCORE_THRESHOLD) -> list[tuple[str, float]]:
    """The (instruction, score) pairs the meta-prompt shows: the `max_instructions` best, by score ascending (a stable
    sort, as `sorted(..., key=score)[-max:]`), those below `threshold` left out."""
    kept = sorted(history, key=lambda pair: pair[1])[-max_instructions:]
    return [(text, score) for text, score in kept if not threshold or score >= threshold]


def opro_scored_block(shown: Sequence[tuple[str, float]], *, buckets: int = OPRO_SCORE_BUCKETS) -> str:
    """`gen_ins_and_score_pairs_substr`'s string, scores bucketized (round(score * buckets))."""
    return "".join(f"\ntext:\n{text}\nscore:\n{round(score * buckets)}\n" for text, score in shown)


def opro_meta_prompt(history: Sequence[tuple[str, float]], exemplars: Sequence[Example], *,
                     placement: PromptPlacement, max_instructions: int = OPRO_MAX_INSTRUCTIONS,
                     threshold: float = OPRO_SCORE_THRESHOLD) -> str:
    """OPRO's meta-prompt: the scored instructions, then the exemplars with the instruction's place (Q_begin for a
    prompt placed before the question, Q_end otherwise) and their ground truth."""
    old = OPRO_OLD_INSTRUCTIONS_INTRO + opro_scored_block(
        opro_shown(history, max_instructions=max_instructions, threshold=threshold))
    exemplar_part = OPRO_EXEMPLARS_INTRO
    for e in exemplars:
        if PromptPlacement(placement) is PromptPlacement.BEGINNING:
            exemplar_part += f"\nProblem:\n<INS>\n{e.input}\n"
        else:
            exemplar_part += f"\nProblem:\n{e.input}\n<INS>\n"
        exemplar_part += f"\nGround truth answer:\n{e.answers[0] if e.answers else ''}\n"
    return old + "\n\n" + exemplar_part + OPRO_INSTRUCTION_REQUEST


def opro_extract(raw: str) -> str | None:
    """optimize_instructions' reading of a GPT optimizer's reply: from after the first <INS> (else the start) to the
    first </INS> (else the end), stripped; None when the reply has no <INS> (gpo-ray's extraction reads it then)."""
    if "<INS>" not in raw:
        return None
    start = raw.index("<INS>") + len("<INS>")
    end = raw.index("</INS>") if "</INS>" in raw else len(raw)
    return raw[start:end].strip()
