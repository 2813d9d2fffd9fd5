"""Run configuration: pydantic models, validated once at the edge and handed down frozen.

A config file (YAML or TOML) is read, CLI flags are merged over it as a nested dict, and the
result is validated once. Errors become one `ConfigError` line naming the field and the problem.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic import Discriminator as _Discriminator
from pydantic import Tag as _Tag

from gpo_ray.errors import ConfigError, error_line
from gpo_ray.vocabulary import MetricKind, PromptPlacement


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointSpec(_Frozen):
    """One server of a role's model. `resource` names a Ray custom resource of the nodes near it (same node or
    region): the actors that call this endpoint are then placed on such nodes."""

    base_url: str = Field(min_length=1)
    resource: str | None = None


class HedgeSettings(_Frozen):
    """Hedged requests: a call still unanswered after the `percentile` of its endpoint's recent latencies gets a
    second, identical request; the first answer wins and the other is cancelled. It cuts the tail that stalled
    or slow replies make, for up to `max_extra_fraction` more requests. Off by default: a hedge may be billed."""

    enabled: bool = False
    percentile: float = Field(default=95.0, gt=0, lt=100, description="wait this percentile of recent latencies")
    min_delay_s: float = Field(default=0.5, ge=0, description="never hedge sooner than this")
    min_samples: int = Field(default=20, ge=1, description="latencies to see before the first hedge")
    max_extra_fraction: float = Field(default=0.1, gt=0, le=1, description="hedges per call sent, at most")


class LLMRoleConfig(_Frozen):
    """One LLM role (optimizer or task model). No base_url and no endpoints means the embedded local model.

    The sampling defaults below are only the class's own; inside a RunConfig each role starts from its own
    (ROLE_DEFAULTS), whatever else a user writes in the role's block."""

    base_url: str | None = None
    endpoints: list[EndpointSpec] = Field(
        default=[], description="several servers of the same model (e.g. one vLLM per GPU node), balanced by load"
    )
    model: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key (never the key)."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    read_timeout_s: float | None = Field(
        default=10.0, gt=0, description="a reply whose body stops arriving this long is cut (stalled) and retried"
    )
    max_reply_bytes: int = Field(
        default=4_000_000, gt=0,
        description="cap on a reply body; below it, a reply larger than max_tokens allows is refused (oversized)",
    )
    hedge: HedgeSettings = HedgeSettings()
    max_retries: int = Field(default=6, ge=0, le=50)
    rate_limited_retry_s: float = Field(
        default=60.0, ge=0,
        description="a call rate-limited (429) again and again is retried past max_retries until it has waited this "
        "long on them: a burst of rate limiting slows a run, it does not stop it",
    )
    max_in_flight: int = Field(default=8, gt=0, le=4096)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    structured_output: bool | None = Field(
        default=None, description="Ask for JSON-schema output; None = on for the embedded model, off elsewhere."
    )

    transport: Literal["http", "openai"] = Field(
        default="http", description="http: one aiohttp POST per call (lean); openai: the openai SDK"
    )
    structured_output_style: Literal["json_schema", "json_object_schema"] | None = Field(
        default=None,
        description="json_schema (OpenAI, vLLM) or json_object_schema (llama-cpp-python); None picks by endpoint",
    )

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or not all(c.isalnum() or c == "_" for c in v)):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the key")
        return v

    @property
    def is_embedded(self) -> bool:
        return self.base_url is None and not self.endpoints

    @property
    def uses_structured_output(self) -> bool:
        """`structured_output`, else its default (on for the embedded model only): one rule for the client and the
        meta-prompt, which must agree."""
        return self.structured_output if self.structured_output is not None else self.is_embedded

    def all_endpoints(self) -> list[EndpointSpec]:
        return ([EndpointSpec(base_url=self.base_url)] if self.base_url else []) + list(self.endpoints)


class ScheduleConfig(_Frozen):
    """The edit budget ("learning rate"): max words changed per step."""

    kind: Literal["fixed", "linear", "cosine"] = "cosine"
    initial: int = Field(default=50, ge=0)
    final: int = Field(default=10, ge=0)
    warmup_steps: int = Field(default=0, ge=0)


class AdaptiveEvaluationSettings(_Frozen):
    """Successive halving over growing prefixes of the eval split (beyond the paper; off by default).

    Round r scores the surviving candidates on the first first_round * eta**r eval examples (a seeded order), then
    keeps the best 1/eta of them; the last survivor is always scored on the full split."""

    enabled: bool = False
    first_round: int = Field(default=8, gt=0, description="eval examples per candidate in the first round")
    eta: int = Field(default=2, ge=2, le=16, description="keep 1/eta of the candidates per round; examples grow by eta")


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


class MomentumSettings(_Frozen):
    """What the optimizer sees of the past (the official momentum_para_name and momentum_update_name)."""

    content: Literal["prompts", "feedback", "none"] = Field(
        default="prompts",
        description="prompts: past prompts with their scores ('para'); feedback: past feedback (needs direction "
        "feedback); none: nothing of the past ('-')",
    )
    update: Literal["retrieve", "summarize"] = Field(
        default="retrieve",
        description="retrieve: the retrieval_k items chosen by `retrieval` ('k-list'); summarize: the previous "
        "summary and the current item merged into one by an extra optimizer call per step ('real-time')",
    )


class OptimizerSettings(_Frozen):
    epochs: int = Field(default=3, gt=0)
    batch_size: int = Field(default=8, gt=0)
    candidates: int = Field(default=8, gt=0, le=256)
    schedule: ScheduleConfig = ScheduleConfig()
    edit_enforcement: Literal["soft", "strict"] = "soft"
    max_rerequests: int = Field(default=2, ge=0, description="strict mode: re-asks for over-budget candidates")
    retrieval: Literal["relevance", "recency", "importance"] = "relevance"
    retrieval_k: int = Field(default=3, gt=0)
    initial_prompt: str = "Let's solve the problem."
    placement: PromptPlacement = PromptPlacement.END
    format_examples: int = Field(default=3, ge=0, description="format.jsonl examples shown in the meta-prompt")
    train_limit: int | None = Field(default=None, gt=0, description="use at most this many training examples")
    eval_limit: int | None = Field(default=None, gt=0, description="use at most this many eval examples")
    test_limit: int | None = Field(default=None, gt=0, description="use at most this many test examples")
    evaluate_test: bool = True
    seed: int = 0
    candidate_scoring: Literal["train_batch", "eval"] = Field(
        default="train_batch",
        description="score candidates on the step's training batch, or on the eval split as the paper does",
    )
    adaptive_evaluation: AdaptiveEvaluationSettings = AdaptiveEvaluationSettings()
    meta_prompt: dict[str, str | int] = Field(
        default={}, description="overrides of the meta-prompt's sentences (fields of MetaPromptTemplate)"
    )
    answer_extraction: Literal["single", "second_turn"] = Field(
        default="single",
        description="single: score the task model's reply; second_turn: ask again for the final answer in the "
        "task's form, as the official GPO code does for chat scorers (two task-model calls per example)",
    )
    metric_variants: dict[MetricKind, Literal["default", "paper"]] = Field(
        default={}, description="per metric kind: gpo-ray's scoring (default) or the official GPO code's (paper)"
    )
    meta_prompt_style: Literal["own", "paper"] = Field(
        default="own",
        description="own: gpo-ray's template (meta_prompt overrides it); paper: the official GPO text, byte for byte",
    )
    retrieval_order: Literal["score_ascending", "as_selected"] = Field(
        default="score_ascending",
        description="retrieved prompts shown by score ascending, or as the official selection method returns them",
    )
    format_example_sampling: Literal["first", "seeded", "paper"] = Field(
        default="first",
        description="the first format_examples of format.jsonl, a seeded draw, or paper: the official code's own draw "
        "(numpy's legacy RNG seeded with `seed`, after the task's train/eval/test permutations), for the task run alone",
    )
    repeated_candidates: Literal["drop", "keep_score"] = Field(
        default="drop",
        description="a candidate scored at an earlier step: dropped, or kept with its earlier eval score (the paper)",
    )
    update: Literal["generate", "edit"] = Field(
        default="generate",
        description="generate: ask for a new prompt; edit: ask to modify the current prompt (the official "
        "generate_without / edit_without)",
    )
    budget_in_prompt: bool = Field(
        default=True,
        description="show the word budget in the meta-prompt (the official w_lr) or not (wo_lr)",
    )
    direction: Literal["none", "feedback"] = Field(
        default="none",
        description="none: no update direction; feedback: score the current prompt on the step's training batch and "
        "ask the optimizer why it got the wrong examples wrong, shown in the meta-prompt (the official "
        "gradient_name feedback)",
    )
    momentum: MomentumSettings = MomentumSettings()
    candidate_extraction: Literal["own", "paper"] = Field(
        default="own",
        description="own: gpo-ray's extraction (last <START>, normalised, checked); paper: the official extract_text + "
        "polish_sentence (first <START>, first <END>, strip, no **, first letter upper-cased; nothing rejected)",
    )
    selection: Literal["own", "paper"] = Field(
        default="own",
        description="own: the best candidate not chosen before (ties: smaller edit, then text); paper: the official "
        "ranking (current prompt at 0.0, repeated candidates, new ones; stable sort) and its rule, slip included",
    )
    new_candidate_order: Literal["seeded", "generated"] = Field(
        default="seeded",
        description="selection paper: the new candidates' order in the ranking, which breaks their ties (the official "
        "list(set(...)) follows the string hash seed): a shuffle seeded by seed, task and step, or generation order",
    )
    trace_scores: bool = Field(
        default=False,
        description="also score the current prompt on each step's training batch (official file-order slices) and "
        "each step's chosen prompt on the test split, as the official code logs them; recorded per step",
    )
    end_choice: Literal["question", "paper"] = Field(
        default="question",
        description="second turn of multiple-choice tasks: the last option from the question's last line, or paper: "
        "from the line the official code reads (the first turn's second-to-last line with placement end)",
    )

    @field_validator("meta_prompt")
    @classmethod
    def _known_template_fields(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        known = {f.name for f in fields(MetaPromptTemplate)}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown meta-prompt part {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return v

    @model_validator(mode="after")
    def _adaptive_needs_eval_scoring(self) -> OptimizerSettings:
        if self.adaptive_evaluation.enabled and self.candidate_scoring != "eval":
            raise ValueError("adaptive_evaluation works on the eval split: set optimizer.candidate_scoring: eval")
        if self.repeated_candidates == "keep_score" and self.candidate_scoring != "eval":
            raise ValueError("repeated_candidates: keep_score reuses eval scores: set optimizer.candidate_scoring: eval")
        if self.meta_prompt_style == "paper":
            if self.placement == PromptPlacement.SYSTEM:
                raise ValueError("meta_prompt_style paper has no system placement (the official code has Q_end, Q_begin)")
            if self.meta_prompt:
                raise ValueError("meta_prompt overrides apply to the own template, not to meta_prompt_style paper")
        if self.momentum.content == "feedback" and self.direction != "feedback":
            raise ValueError("momentum.content feedback keeps past feedback: it needs optimizer.direction: feedback")
        if self.momentum.content == "none" and self.momentum.update == "summarize":
            raise ValueError("momentum.update summarize needs something to summarize: momentum.content prompts or "
                             "feedback")
        if self.selection == "paper" and (self.candidate_scoring != "eval" or self.repeated_candidates != "keep_score"
                                          or self.adaptive_evaluation.enabled):
            raise ValueError("selection paper ranks eval scores as the official code does: it needs candidate_scoring: "
                             "eval, repeated_candidates: keep_score and no adaptive_evaluation")
        if not self.budget_in_prompt and self.edit_enforcement == "strict":
            raise ValueError("edit_enforcement strict re-asks for over-budget candidates: it needs budget_in_prompt: true")
        return self


# --- a task's own metric (tasks/metric_specs.py scores these; README "Your own metric") ------------------------------


class _Check(_Frozen):
    weight: float = Field(default=1.0, gt=0, description="its share of the checks' weighted mean")


class ContainsCheck(_Check):
    """The reply contains `text`."""

    check: Literal["contains"]
    text: str = Field(min_length=1)
    case_sensitive: bool = False


class RegexCheck(_Check):
    """The reply matches `pattern` somewhere (re.search)."""

    check: Literal["regex"]
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import re

        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v


class JsonCheck(_Check):
    """The reply is JSON (alone, or in a ```json fence); optionally valid against `schema`, optionally with `fields`
    equal to the reference's (the reference parsed as JSON). Scores the share of those fields that are equal."""

    check: Literal["json"]
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="a JSON Schema the reply meets")
    fields: tuple[str, ...] = ()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @field_validator("schema_")
    @classmethod
    def _is_a_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(v).check_schema(v)
            except jsonschema.SchemaError as e:
                raise ValueError(f"not a valid JSON Schema: {e.message}") from None
        return v


class OneOfCheck(_Check):
    """The reply (stripped of spaces, quotes and final punctuation) is one of `labels`."""

    check: Literal["one_of"]
    labels: tuple[str, ...] = Field(min_length=1)
    case_sensitive: bool = False


class SimilarityCheck(_Check):
    """How close the reply is to the reference: rapidfuzz's ratio, 0..1 (the best over several references)."""

    check: Literal["similarity"]


MetricCheck = Annotated[ContainsCheck | RegexCheck | JsonCheck | OneOfCheck | SimilarityCheck,
                        _Discriminator("check")]


class ChecksMetric(_Frozen):
    """Built-in checks that need no code; the score is their weighted mean."""

    kind: Literal["checks"]
    checks: tuple[MetricCheck, ...] = Field(min_length=1)


class PythonMetric(_Frozen):
    """A metric of your own: `function(example, reply)` returns a score in [0, 1] (a bool counts) or (score,
    feedback). It runs in the evaluator actors."""

    kind: Literal["python"]
    function: str = Field(description="package.module:name, or path/to/file.py:name (in a config file, relative to "
                          "it): the file is shipped to every node's evaluators (Ray runtime_env py_modules)")
    source_hash: str | None = Field(
        default=None, description="set when a run starts (tasks/metric_functions.py): a resume with a changed "
        "function says so instead of mixing two metrics in one trajectory",
    )

    @field_validator("function")
    @classmethod
    def _module_and_name(cls, v: str) -> str:
        import re

        module, _, name = v.rpartition(":")
        if module.endswith(".py"):
            if not re.fullmatch(r"[A-Za-z_]\w*", Path(module).stem) or not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise ValueError(f"{v!r} must be 'path/to/file.py:name', the file's name a Python identifier")
        elif not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"{v!r} must be 'package.module:name' or 'path/to/file.py:name'")
        return v


class JudgeMetric(_Frozen):
    """An LLM judge (the run's `judge_model` role) scores each reply by `rubric` on an integer scale [low, high],
    normalised to [0, 1] as (score - low) / (high - low); its reason is the metric's feedback."""

    kind: Literal["judge"]
    rubric: str = Field(min_length=1, description="what a good reply is, in the judge's words")
    scale: tuple[int, int] = Field(default=(1, 5), description="the judge's integer scale [low, high]; 1..5 by default")

    @field_validator("scale", mode="before")
    @classmethod
    def _range(cls, v: Any) -> Any:
        if isinstance(v, str):  # "1..5" as well as [1, 5]
            low, sep, high = v.partition("..")
            if not sep:
                raise ValueError(f"{v!r} must be 'low..high' or [low, high]")
            try:
                return int(low), int(high)
            except ValueError:
                raise ValueError(f"{v!r} must be 'low..high' with integers") from None
        return v

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] >= v[1]:
            raise ValueError(f"scale {list(v)}: low must be below high")
        return v


MetricSpec = Annotated[PythonMetric | ChecksMetric | JudgeMetric, _Discriminator("kind")]


def _built_in_or_spec(value: Any) -> str:
    """A mapping (or a model) is a spec, anything else a built-in kind: an error then names what was meant."""
    return "spec" if isinstance(value, (dict, PythonMetric, ChecksMetric, JudgeMetric)) else "built_in"


# What a task source's `metric` may be: a built-in kind (vocabulary.MetricKind) or a spec.
TaskMetric = Annotated[Annotated[MetricKind, _Tag("built_in")] | Annotated[MetricSpec, _Tag("spec")],
                       _Discriminator(_built_in_or_spec)]


class TaskSource(_Frozen):
    """A user's own task: GPO folder layout, JSONL, CSV, Parquet, a Hugging Face dataset, or the official
    BIG-Bench-Hard JSON. Tables come as a folder of named splits or one table carved by a seeded shuffle."""

    name: str = Field(min_length=1)
    format: Literal["gpo", "jsonl", "csv", "parquet", "hf", "bbh_json"] = "gpo"
    # A file (carved), a folder of split files (train.csv, eval.csv, test.csv), or a `save_to_disk` folder (hf).
    # Settings added after the first release are left out of the dump at their default (`exclude_if`), so a run's
    # fingerprint, and with it `resume`, is what it was before they existed.
    path: Path | None = Field(default=None, exclude_if=lambda v: v is None)
    dataset: str | None = Field(default=None, exclude_if=lambda v: v is None,
                                description="format hf: a Hugging Face hub name, read with datasets.load_dataset")
    subset: str | None = Field(default=None, exclude_if=lambda v: v is None,
                               description="format hf: the hub dataset's configuration name")
    splits: dict[Literal["train", "eval", "test"], str] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="train/eval/test -> the file stem in a folder or the Hugging Face split name; all three",
    )
    input_field: str = "input"
    input_template: str | None = Field(default=None, exclude_if=lambda v: v is None,
                                       description='str.format over columns, e.g. "Ticket: {subject}\\n{body}"')
    # None: a task without references (a judge or a function metric scores it).
    answer_field: str | None = "target"
    answer_fields: list[str] | None = Field(
        default=None, exclude_if=lambda v: v is None, min_length=1,
        description="several reference columns: each kept in the example's fields, the answer is a JSON object",
    )
    id_field: str | None = Field(default=None, exclude_if=lambda v: v is None,
                                 description="the column holding each example's id; default the split and row")
    placement: PromptPlacement | None = Field(default=None, exclude_if=lambda v: v is None,
                                              description="where this task's prompt goes; default optimizer.placement")
    metric: TaskMetric | None = Field(
        default=None, description="a built-in kind, a spec ({kind: python, ...} or {kind: checks, ...}), or None to "
        "infer a built-in kind from the name and answers",
    )
    # One table has no splits: train/eval sizes carve it (rest is test), shuffled with split_seed.
    train_size: int = Field(default=48, ge=1)
    eval_size: int = Field(default=48, ge=1)
    split_seed: int = 0

    @model_validator(mode="after")
    def _source_is_consistent(self) -> TaskSource:
        import string  # local: config.py's imports stay as they are

        if self.format == "hf":
            if (self.path is None) == (self.dataset is None):
                raise ValueError("format hf needs one of path (a save_to_disk folder) or dataset (a hub name)")
        elif self.path is None:
            raise ValueError(f"format {self.format} needs path")
        elif self.dataset is not None or self.subset is not None:
            raise ValueError("dataset and subset are for format hf")
        if self.splits is not None and set(self.splits) != {"train", "eval", "test"}:
            raise ValueError("splits needs all of train, eval and test")
        explicit_answer_field = "answer_field" in self.model_fields_set and self.answer_field is not None
        if self.answer_fields is not None and explicit_answer_field:
            raise ValueError("give answer_field or answer_fields, not both")
        if self.input_template is not None:
            try:
                parsed = list(string.Formatter().parse(self.input_template))
            except ValueError as e:
                raise ValueError(f"input_template is not a str.format template: {e}") from None
            names = [field for _, field, _, _ in parsed if field is not None]
            if not names:
                raise ValueError("input_template names no column: write {column} for each one it uses")
            for field in names:
                if not field or field.isdigit() or any(c in field for c in ".["):
                    raise ValueError(f"input_template field {{{field}}} must be a column name")
        return self

    @property
    def reference_fields(self) -> tuple[str, ...]:
        """The columns that hold the reference: one, several, or none (`answer_field: null`)."""
        if self.answer_fields is not None:
            return tuple(self.answer_fields)
        return () if self.answer_field is None else (self.answer_field,)


class ClusterSettings(_Frozen):
    """Where things run. On a cluster whose nodes carry the custom resources `gpo_head`, `gpo_refiner` and
    `gpo_evaluator` (see ray_cluster.yaml), actors are placed by them; elsewhere anywhere, spread over nodes."""

    address: str | None = Field(default=None, description="Ray address; None starts a local cluster")
    # None: sized for the run, 1 each for a small run on a local cluster, else 2 (runtime/local_cluster.py).
    num_refiners: int | None = Field(default=None, gt=0)
    num_evaluators: int | None = Field(default=None, gt=0)
    evaluator_max_in_flight: int = Field(default=8, gt=0)
    # The first calls begin in the driver while Ray and the actors start (controller/warm_start.py); a run that
    # joins a cluster by address never does this.
    warm_start: bool = True
    chroma_host: str | None = Field(default=None, description="Chroma server host; None = embedded store")
    chroma_port: int = Field(default=8000, gt=0, lt=65536)
    chroma_token_env: str | None = None
    memory_shards: int | None = Field(
        default=None, gt=0, le=64,
        description="trajectory-memory actors, tasks split by a hash of their name; None: one per 500 tasks (at "
        "most 4). Fixed when a run is created: a resume keeps the run's count",
    )
    # How the memory is written, not what it holds: like the rest of `cluster`, outside the run's fingerprint.
    memory_flush_interval_s: float = Field(
        default=1.0, ge=0, le=3600,
        description="embedded store: a step is acknowledged once in the memory's pending log and written to Chroma "
        "with the others of up to this many seconds in one upsert (~9 ms of CPU each); 0 = every step written at "
        "once. A Chroma server is always written at once",
    )


class BudgetSettings(_Frozen):
    max_calls: int | None = Field(default=None, gt=0, description="stop after this many LLM requests in all "
                                  "(usage.json `requests`: retries count, cache hits are free)")
    max_tokens: int | None = Field(default=None, gt=0, description="stop after this many tokens in all "
                                   "(what the endpoint reported: cache hits are free)")
    max_metric_errors: int | None = Field(
        default=10, ge=0,
        description="a task's examples its metric may fail to score (raised, or no score in [0, 1]) before the run "
        "stops; each scores 0 and counts as metric_error. Counted from the run's (or resume's) start; None: no limit",
    )


class EmbedderConfig(_Frozen):
    """How trajectory prompts are embedded for relevance retrieval: the bundled MiniLM (offline), or an
    OpenAI-compatible /v1/embeddings endpoint."""

    kind: Literal["minilm", "openai"] = "minilm"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _endpoint_given(self) -> EmbedderConfig:
        if self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError("kind 'openai' needs base_url and model")
        return self


class TrackingSettings(_Frozen):
    """Where a run reports while it runs. Not part of the fingerprint: a resume may turn these on or off."""

    ray_metrics: bool = Field(default=True, description="export gpo_* metrics through ray.util.metrics")
    mlflow: bool | None = Field(
        default=None, description="log to MLflow; None: when mlflow is installed and a tracking URI is configured"
    )
    mlflow_tracking_uri: str | None = Field(default=None, description="default: MLFLOW_TRACKING_URI")
    mlflow_experiment: str = "gpo-ray"


# Fields added after runs were first written: left out of the fingerprint while they hold their default, so a run
# made by an older gpo-ray still resumes.
_FINGERPRINT_NEUTRAL_DEFAULTS = {
    "train_limit": None,
    "answer_extraction": "single",
    "metric_variants": {},
    "candidate_scoring": "train_batch",
    "adaptive_evaluation": AdaptiveEvaluationSettings().model_dump(),
    "meta_prompt_style": "own",
    "retrieval_order": "score_ascending",
    "format_example_sampling": "first",
    "repeated_candidates": "drop",
    "update": "generate",
    "budget_in_prompt": True,
    "direction": "none",
    "momentum": MomentumSettings().model_dump(),
    "candidate_extraction": "own",
    "selection": "own",
    "new_candidate_order": "seeded",
    "trace_scores": False,
    "end_choice": "question",
}

# Role settings that say how calls are sent, not what is asked: outside the fingerprint, so a resume may change them.
_HOW_CALLS_ARE_SENT = ("transport", "read_timeout_s", "max_reply_bytes", "hedge", "rate_limited_retry_s")

# `preset: paper`: GPO as its authors ran it (RUCAIBox/GPO at 765df20, GPO.sh and optimize.py). Laid under the
# user's own settings: a key given in the file or by a flag still wins. README "The paper preset" lists each key.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": {
            "epochs": 3,  # NUM_SEARCH_EPOCHS
            "batch_size": 8,  # OPT_BATCH_SIZE
            "candidates": 8,  # NUM_GENERATED_INSTRUCTIONS_IN_EACH_STEP
            "initial_prompt": "Let's think step by step.",  # INITIAL_INSTRUCTION
            "placement": "end",  # INSTRUCTION_POS Q_end
            "format_examples": 3,  # FORMAT_DATA_NUM
            "format_example_sampling": "paper",  # np.random.seed(0), the split permutations, choice(format_num, 3)
            "retrieval": "relevance",  # MOMENTUM_SELECTION_NAME relavance
            "retrieval_k": 3,  # MOMENTUM_SELECTION_NUM
            "retrieval_order": "as_selected",  # k_update.py shows the selection's order
            "schedule": {"kind": "cosine", "initial": 50, "final": 10, "warmup_steps": 0},  # INITIAL/FINAL_STEP_SIZE
            "edit_enforcement": "soft",  # w_lr only asks
            "candidate_scoring": "eval",  # optimize.py scores new prompts on the eval split
            "repeated_candidates": "keep_score",  # instruction_score_dict
            "candidate_extraction": "paper",  # optimize.py extract_text + eval_utils.polish_sentence
            "selection": "paper",  # optimize.py current_instruction2score, sorted, prev_best_instruction
            "new_candidate_order": "seeded",  # list(set(new)): hash-seed order, a seeded shuffle here
            "trace_scores": True,  # train_log on each batch, test_log for each step's prompt
            "end_choice": "paper",  # eval_utils.py: conv[0]["content"].split("\n")[-2]
            "meta_prompt_style": "paper",  # generate_without_gradient.py, k_update.py, w_lr.py
            "answer_extraction": "second_turn",  # eval_utils.py: get_second_round_prompt for chat scorers
            "metric_variants": {"multiple_choice": "paper", "exact_match": "paper", "numeric": "paper",
                                "rouge_l": "paper"},  # evaluation/metrics.py
        },
        "optimizer_model": {"temperature": 1.0, "max_tokens": 512, "structured_output": False},
        "task_model": {"temperature": 0.0, "max_tokens": 256},  # the scorer's call_scorer: greedy, 256 tokens
    }
}


# Each role's own sampling settings: the optimizer samples diverse candidates (GPO draws 8 per step at 1.0), the task
# model answers greedily with its replies capped. A role block that names only an endpoint, a model or a key keeps
# them: RunConfig lays a user's role block (dict or LLMRoleConfig, only the fields set) over these, then the preset.
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "task_model": {"temperature": 0.0, "max_tokens": 256},
    "optimizer_model": {"temperature": 1.0, "max_tokens": 256},
    "judge_model": {"temperature": 0.0, "max_tokens": 200},  # a score and a reason: greedy, so a rerun agrees
}
ROLES = tuple(ROLE_DEFAULTS)


def _role_fields_given(value: Any) -> Any:
    """A role as the fields a user gave: an LLMRoleConfig built in code counts only the fields set on it."""
    if isinstance(value, LLMRoleConfig):
        return value.model_dump(exclude_unset=True)
    return value


def layered_config(data: dict[str, Any]) -> dict[str, Any]:
    """The role defaults, then the preset, then what the user gave. In a role's block an explicit null wins (e.g.
    `max_tokens: null`, no cap); elsewhere null means not given, as for CLI flags."""
    data = {k: (_role_fields_given(v) if k in ROLES else v) for k, v in data.items()}
    preset = PRESETS.get(data["preset"], {}) if isinstance(data.get("preset"), str) else {}
    out = deep_merge(preset, {k: v for k, v in data.items() if k not in ROLES})
    for role in ROLES:
        given = data.get(role, {})
        if not isinstance(given, dict):  # not a mapping: let validation say so
            out[role] = given
            continue
        out[role] = {**ROLE_DEFAULTS[role], **preset.get(role, {}), **given}
    return out


def sampling_settings(config: RunConfig) -> dict[str, dict[str, Any]]:
    """What each role's requests are sampled with, as sent (results.json, `gpo-ray plan`); judge_model only in a run
    that has a judge metric (elsewhere it sends nothing)."""
    return {role: {"model": getattr(config, role).model or ("embedded" if getattr(config, role).is_embedded else None),
                   "temperature": getattr(config, role).temperature,
                   "max_tokens": getattr(config, role).max_tokens}
            for role in used_roles(config)}


def used_roles(config: RunConfig) -> tuple[str, ...]:
    """The roles a run sends requests to: the task and optimizer models, and the judge where a metric is one."""
    return tuple(r for r in ROLES if r != "judge_model" or judge_metrics(config))


class RunConfig(_Frozen):
    preset: Literal["paper"] | None = Field(
        default=None, description="paper: every setting as the official GPO code runs it, under your own settings"
    )
    tasks: list[str] = Field(min_length=1, description="task names or globs, e.g. bbh/navigate, mmlu/*")
    data_dir: Path | None = None
    task_sources: list[TaskSource] = []
    task_model: LLMRoleConfig = LLMRoleConfig(**ROLE_DEFAULTS["task_model"])
    optimizer_model: LLMRoleConfig = LLMRoleConfig(**ROLE_DEFAULTS["optimizer_model"])
    judge_model: LLMRoleConfig = Field(default=LLMRoleConfig(**ROLE_DEFAULTS["judge_model"]),
                                       description="the LLM judge of `kind: judge` metrics; unused otherwise")
    optimizer: OptimizerSettings = OptimizerSettings()
    cluster: ClusterSettings = ClusterSettings()
    budget: BudgetSettings = BudgetSettings()
    embedder: EmbedderConfig = EmbedderConfig()
    tracking: TrackingSettings = TrackingSettings()
    run_dir: Path | None = Field(default=None, description="default: runs/<time>-<id> in the current folder")
    cache: bool = True

    @model_validator(mode="before")
    @classmethod
    def _role_defaults_and_preset(cls, data: Any) -> Any:
        return layered_config(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _paper_style_needs_markers(self) -> RunConfig:
        if self.optimizer.meta_prompt_style == "paper" and self.optimizer_model.uses_structured_output:
            raise ValueError("meta_prompt_style paper asks for <START>/<END>: set optimizer_model.structured_output: false")
        if self.optimizer.meta_prompt_style == "paper":
            for source in self.task_sources:
                if not source.reference_fields:
                    raise ValueError(f"meta_prompt_style paper shows each example's answer, and task '{source.name}' "
                                     "has none (answer_field: null): use meta_prompt_style own for it")
        return self

    @model_validator(mode="after")
    def _schedule_sane(self) -> RunConfig:
        s = self.optimizer.schedule
        if s.kind != "fixed" and s.final > s.initial:
            raise ValueError("optimizer.schedule.final must not exceed optimizer.schedule.initial")
        return self

    def public_dict(self) -> dict[str, Any]:
        """JSON-safe dict for config.json. Holds env var *names* only, never key values."""
        return json.loads(self.model_dump_json())

    def fingerprint(self) -> str:
        """What must match for `resume` to continue a run (everything except where it runs)."""
        import hashlib

        d = self.public_dict()
        d.pop("run_dir", None)
        d.pop("cluster", None)
        d.pop("budget", None)
        d.pop("tracking", None)
        if d.get("preset") is None:
            d.pop("preset", None)
        if not judge_metrics(self):  # added with the judge: runs without one keep their fingerprint
            d.pop("judge_model", None)
        for role in (r for r in ROLES if r in d):
            for how in _HOW_CALLS_ARE_SENT:  # not what is asked
                d[role].pop(how, None)
        for key, default in _FINGERPRINT_NEUTRAL_DEFAULTS.items():
            if d["optimizer"].get(key) == default:
                d["optimizer"].pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def judge_metrics(config: RunConfig) -> list[JudgeMetric]:
    """The judge metrics of a run's own tasks (built-in tasks have none)."""
    return [s.metric for s in config.task_sources if isinstance(s.metric, JudgeMetric)]


def read_config_file(path: Path) -> dict[str, Any]:
    """Read YAML or TOML into a dict; a broken file becomes a ConfigError naming it. `example:NAME` is a shipped
    example's config (gpo_ray/examples/)."""
    if str(path).startswith("example:") and not path.exists():
        from gpo_ray.examples import example_config  # local: the examples folder is data beside the schema

        path = example_config(str(path))
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: {error_line(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(data).__name__}")
    return anchor_paths(data, folder=path.parent, source=path)


def anchor_paths(data: dict[str, Any], *, folder: Path, source: Path) -> dict[str, Any]:
    """Relative paths in a config read from a file are relative to that file's folder (run_dir stays relative to
    where you run). Changes `data` in place and returns it; `source` names the file in errors."""
    def anchored(value: Any, field: str) -> Any:
        if not isinstance(value, str) or Path(value).is_absolute():
            return value
        if "\x00" in value:
            raise ConfigError(f"{source}: {field}: a path must not contain a NUL byte")
        return str((folder / value).resolve())

    if "data_dir" in data:
        data["data_dir"] = anchored(data["data_dir"], "data_dir")
    sources = data.get("task_sources")
    if isinstance(sources, list):
        for i, src in enumerate(sources):
            if isinstance(src, dict) and "path" in src:
                src["path"] = anchored(src["path"], f"task_sources.{i}.path")
            metric = src.get("metric") if isinstance(src, dict) else None
            if isinstance(metric, dict) and metric.get("kind") == "python" and isinstance(metric.get("function"), str):
                file, sep, name = metric["function"].rpartition(":")
                if sep and file.endswith(".py"):  # a metric file beside the config
                    metric["function"] = f"{anchored(file, f'task_sources.{i}.metric.function')}:{name}"
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins; nested dicts merge. None in override means 'not given'."""
    out = dict(base)
    for k, v in override.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def format_validation_error(e: ValidationError) -> str:
    """One line: the first failing field and its problem (and how many more there are)."""
    errs = e.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]).encode("unicode_escape").decode("ascii") or "config"
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return f"invalid config: {loc}: {msg}{more}"


def load_config(path: Path | None = None, *, overrides: dict[str, Any] | None = None) -> RunConfig:
    """File (optional) + CLI overrides -> validated RunConfig, or ConfigError."""
    data = read_config_file(path) if path is not None else {}
    data = deep_merge(data, overrides or {})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
