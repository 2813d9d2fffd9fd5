"""The run configuration's schema: frozen pydantic models and their validators, validated once at the edge.

What they validate comes layered (presets.py: role defaults, then a preset, then the user's settings); a run's
fingerprint is fingerprint.py's, the meta-prompt's sentences templates.py's, reading a file files.py's.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from gpo_ray.config.fingerprint import fingerprint_of
from gpo_ray.config.presets import ROLE_DEFAULTS, ROLES, layered_config
from gpo_ray.config.templates import MetaPromptTemplate
from gpo_ray.vocabulary import ConfigRole, MetricKind, PromptPlacement


# A role's cap of requests in flight per endpoint (the whole run's) when it sets none: a remote endpoint's, where the
# adaptive limit finds the endpoint's capacity below it (two actors get 64 each, what the throughput benchmark ran
# per actor), and the embedded llama.cpp server's (one request at a time).
DEFAULT_IN_FLIGHT = 128
DEFAULT_EMBEDDED_IN_FLIGHT = 8


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointSpec(_Frozen):
    """One server of a role's model. `resource` names a Ray custom resource of the nodes near it (same node or
    region): the actors that call this endpoint are then placed on such nodes."""

    base_url: str = Field(min_length=1, description="the server's OpenAI-compatible base URL")
    resource: str | None = Field(default=None, description="a Ray custom resource of the nodes near this server")


class HedgeSettings(_Frozen):
    """Hedged requests: a call still unanswered after the `percentile` of its endpoint's recent latencies gets a
    second, identical request; the first answer wins and the other is cancelled. It cuts the tail that stalled
    or slow replies make, for up to `max_extra_fraction` more requests. Off by default: a hedge may be billed."""

    enabled: bool = False
    percentile: float = Field(default=95.0, gt=0, lt=100, description="wait this percentile of recent latencies")
    min_delay_s: float = Field(default=0.5, ge=0, description="never hedge sooner than this")
    min_samples: int = Field(default=20, ge=1, description="latencies to see before the first hedge")
    max_extra_fraction: float = Field(default=0.1, gt=0, le=1, description="hedges per call sent, at most")


class AdaptiveConcurrencySettings(_Frozen):
    """Calls in flight to each endpoint learned from its answers (llm/concurrency.py): the limit grows while latency
    holds near its baseline (the endpoint's latency when it is not queueing) and shrinks when latency rises well
    above it or the endpoint answers 429, never above the role's `max_in_flight` (the cap) nor below `min`. Each actor
    learns its share of the cap (the cap divided among the actors that call the endpoint). On by default."""

    # Off: each actor keeps its share of max_in_flight calls in flight per endpoint, fixed.
    enabled: bool = True
    min: int = Field(default=1, ge=1, description="the limit never goes below this")
    initial: int = Field(default=4, ge=1, description="the limit a client starts at (within min and its share of "
                         "max_in_flight)")
    backoff_ratio: float = Field(default=0.5, gt=0, lt=1, description="the limit is multiplied by this on a 429 "
                                 "(once a round trip)")
    latency_tolerance: float = Field(default=2.0, ge=1, description="latency above this multiple of the baseline "
                                     "shrinks the limit")


class LLMRoleConfig(_Frozen):
    """One LLM role (optimizer or task model). No base_url and no endpoints means the embedded local model.

    The sampling defaults below are only the class's own; inside a RunConfig each role starts from its own
    (ROLE_DEFAULTS), whatever else a user writes in the role's block."""

    base_url: str | None = Field(default=None, description="the OpenAI-compatible endpoint; None (and no endpoints): "
                                 "the embedded local model")
    endpoints: list[EndpointSpec] = Field(
        default=[], description="several servers of the same model (e.g. one vLLM per GPU node), balanced by load"
    )
    model: str | None = Field(default=None, description="the model name sent with each request")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key (never the key)."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="sampling temperature of the role's requests")
    max_tokens: int | None = Field(default=None, gt=0, description="cap on a reply's tokens; null: no cap")
    timeout_s: float = Field(default=60.0, gt=0, description="an attempt with no response within this long is a "
                             "timeout, retried; it alone bounds a slow generation before the headers")
    read_timeout_s: float | None = Field(
        default=10.0, gt=0, description="a reply whose body stops arriving this long is cut (stalled) and retried"
    )
    idle_read_timeout_s: float | None = Field(
        default=0.5, gt=0, description="a body that has begun and then stops arriving is cut (stalled) and retried "
        "after this long, or 4x the longest pause in the endpoint's recent bodies when longer (at most "
        "read_timeout_s); the wait for a body's first bytes is read_timeout_s's alone. null: read_timeout_s only",
    )
    max_reply_bytes: int = Field(
        default=4_000_000, gt=0,
        description="cap on a reply body; below it, a reply larger than max_tokens allows is refused (oversized)",
    )
    hedge: HedgeSettings = Field(default=HedgeSettings(), description="hedged requests (off by default)")
    max_retries: int = Field(default=6, ge=0, le=50, description="retries of a call on 429, 408/409/5xx, timeouts, "
                             "connection errors and malformed bodies, with exponential backoff and full jitter")
    rate_limited_retry_s: float = Field(
        default=60.0, ge=0,
        description="a call rate-limited (429) again and again is retried past max_retries until it has waited this "
        "long on them: a burst of rate limiting slows a run, it does not stop it",
    )
    max_in_flight: int | None = Field(
        default=None, gt=0, le=4096,
        description="at most this many requests in flight to each of the role's endpoints, for the whole run (divided "
        "among the actors that call it); with adaptive_concurrency, the cap of the learned limit. None: "
        f"{DEFAULT_IN_FLIGHT} for a remote endpoint, {DEFAULT_EMBEDDED_IN_FLIGHT} for the embedded model",
    )
    adaptive_concurrency: AdaptiveConcurrencySettings = Field(
        default=AdaptiveConcurrencySettings(), description="learn each endpoint's concurrency (on by default)"
    )
    requests_per_minute: float | None = Field(default=None, gt=0, description="per endpoint, for the whole run: "
                                              "every actor on every node shares it")
    tokens_per_minute: float | None = Field(default=None, gt=0, description="per endpoint, for the whole run; "
                                            "charged from an estimate, corrected with the reported usage")
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

    @property
    def in_flight_cap(self) -> int:
        """`max_in_flight`, else its default: requests in flight to each endpoint for the whole run, at most. The
        embedded llama.cpp server answers one request at a time, so it gets few."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return DEFAULT_EMBEDDED_IN_FLIGHT if self.is_embedded else DEFAULT_IN_FLIGHT

    @model_validator(mode="after")
    def _adaptive_min_within_the_cap(self) -> LLMRoleConfig:
        if self.adaptive_concurrency.enabled and self.adaptive_concurrency.min > self.in_flight_cap:
            raise ValueError("adaptive_concurrency.min must not exceed max_in_flight (the cap)")
        return self

    def all_endpoints(self) -> list[EndpointSpec]:
        return ([EndpointSpec(base_url=self.base_url)] if self.base_url else []) + list(self.endpoints)


class ScheduleConfig(_Frozen):
    """The edit budget ("learning rate"): max words changed per step."""

    kind: Literal["fixed", "linear", "cosine"] = Field(default="cosine", description="how the budget goes from "
                                                       "initial to final over the run's steps")
    initial: int = Field(default=50, ge=0, description="the budget at the first step (words)")
    final: int = Field(default=10, ge=0, description="the budget at the last step (words)")
    warmup_steps: int = Field(default=0, ge=0, description="steps of linear warmup before the schedule")


class AdaptiveEvaluationSettings(_Frozen):
    """Successive halving over growing prefixes of the eval split (beyond the paper; off by default).

    Round r scores the surviving candidates on the first first_round * eta**r eval examples (a seeded order), then
    keeps the best 1/eta of them; the last survivor is always scored on the full split."""

    enabled: bool = False
    first_round: int = Field(default=8, gt=0, description="eval examples per candidate in the first round")
    eta: int = Field(default=2, ge=2, le=16, description="keep 1/eta of the candidates per round; examples grow by eta")


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


class ApeSettings(_Frozen):
    """optimizer.method ape (Zhou et al. 2023; keirp/automatic_prompt_engineer): step 1 proposes `candidates`
    instructions from demos of the training split (forward mode), each later step resamples the current one (the
    iterative variant); candidates are scored on the eval split and the best of them and the current is kept."""

    num_demos: int = Field(default=5, gt=0, description="input-output pairs per proposal request (configs/default.yaml "
                           "generation.num_demos), drawn per request from the training split")


class ApoSettings(_Frozen):
    """optimizer.method apo (ProTeGi, Pryzant et al. 2023; microsoft/LMOps prompt_optimization, its main.py
    defaults): per step, every beam prompt's errors on a minibatch give textual gradients, each gradient an edit,
    each new prompt Monte Carlo paraphrases; the beam is the best `beam_size` of the expansion by a UCB bandit."""

    beam_size: int = Field(default=4, gt=0, description="prompts kept per step")
    minibatch_size: int = Field(default=64, gt=0, description="training examples each beam prompt is scored on for its "
                                "errors")
    n_gradients: int = Field(default=4, gt=0, description="gradient requests per beam prompt")
    errors_per_gradient: int = Field(default=4, gt=0, description="wrong examples shown per gradient request")
    gradients_per_error: int = Field(default=1, gt=0, description="reasons asked per gradient request")
    steps_per_gradient: int = Field(default=1, gt=0, description="improved prompts asked per reason")
    mc_samples_per_step: int = Field(default=2, ge=0, description="paraphrases per new prompt and per beam prompt")
    max_expansion_factor: int = Field(default=8, gt=0, description="new prompts kept per beam prompt (a seeded sample)")
    eval_rounds: int = Field(default=8, gt=0, description="UCB bandit rounds")
    eval_prompts_per_round: int = Field(default=8, gt=0, description="prompts scored per bandit round")
    samples_per_eval: int = Field(default=32, gt=0, description="training examples per prompt per bandit round")
    c: float = Field(default=1.0, ge=0, description="UCB exploration constant")


class OproSettings(_Frozen):
    """optimizer.method opro (Yang et al. 2024; google-deepmind/opro, optimize_instructions.py's settings): each step
    shows the best `max_instructions` scored instructions by score ascending and `exemplars` training problems, asks
    `candidates` instructions and scores them on the training split."""

    max_instructions: int = Field(default=20, gt=0, description="scored instructions shown (max_num_instructions)")
    score_threshold: float = Field(default=0.3, ge=0, le=1, description="instructions scored below it are not shown "
                                   "(old_instruction_score_threshold for GPT scorers)")
    exemplars: int = Field(default=3, ge=0, description="training problems shown per step, a seeded draw "
                           "(num_few_shot_questions_for_instruction_refinement)")


# Settings of GPO's design space that the rival methods' papers do not define: setting one with a rival method is
# an error (config, one line). `candidates` is APO's too: its expansion sets how many prompts a step makes.
GPO_ONLY_SETTINGS = (
    "schedule", "edit_enforcement", "max_rerequests", "retrieval", "retrieval_k", "retrieval_order",
    "format_examples", "format_example_sampling", "candidate_scoring", "adaptive_evaluation", "meta_prompt",
    "meta_prompt_style", "repeated_candidates", "update", "budget_in_prompt", "direction", "momentum",
    "candidate_extraction", "selection", "new_candidate_order", "trace_scores",
)
RIVAL_METHODS = ("ape", "apo", "opro")


class OptimizerSettings(_Frozen):
    epochs: int = Field(default=3, gt=0, description="passes over the training split; steps T = epochs x steps per "
                        "epoch (floor(train/batch), +1 for a remainder of at least half a batch)")
    batch_size: int = Field(default=8, gt=0, description="training examples per step")
    candidates: int = Field(default=8, gt=0, le=256, description="optimizer samples per step")
    schedule: ScheduleConfig = Field(default=ScheduleConfig(), description="the edit budget N(t) per step")
    edit_enforcement: Literal["soft", "strict"] = Field(
        default="soft", description="soft: the budget is only stated (the paper); strict: over-budget candidates "
        "are re-asked",
    )
    max_rerequests: int = Field(default=2, ge=0, description="strict mode: re-asks for over-budget candidates")
    retrieval: Literal["relevance", "recency", "importance"] = Field(
        default="relevance", description="which past prompts the meta-prompt shows: the newest and the most similar "
        "to it, the newest, or the best",
    )
    retrieval_k: int = Field(default=3, gt=0, description="how many past prompts are retrieved")
    initial_prompt: str = Field(default="Let's solve the problem.", description="the prompt the trajectory starts from")
    placement: PromptPlacement = Field(default=PromptPlacement.END, description="where the prompt goes in a task-model "
                                       "request: after the question (the paper), before it, or as the system message")
    format_examples: int = Field(default=3, ge=0, description="format.jsonl examples shown in the meta-prompt")
    train_limit: int | None = Field(default=None, gt=0, description="use at most this many training examples")
    eval_limit: int | None = Field(default=None, gt=0, description="use at most this many eval examples")
    test_limit: int | None = Field(default=None, gt=0, description="use at most this many test examples")
    evaluate_test: bool = Field(default=True, description="score prompts on the test split: the initial and the best "
                                "(with trace_scores, each step's)")
    seed: int = Field(default=0, description="the run's seed: batch shuffles, optimizer request seeds, "
                        "seeded draws and orders")
    candidate_scoring: Literal["train_batch", "eval"] = Field(
        default="train_batch",
        description="score candidates on the step's training batch, or on the eval split as the paper does",
    )
    adaptive_evaluation: AdaptiveEvaluationSettings = Field(
        default=AdaptiveEvaluationSettings(), description="successive halving (needs candidate_scoring: eval)"
    )
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
    momentum: MomentumSettings = Field(default=MomentumSettings(), description="what the optimizer sees of the past")
    method: Literal["gpo", "ape", "apo", "opro", "pe2"] = Field(
        default="gpo",
        description="the optimizer: gpo; ape, apo (ProTeGi), opro, each as its paper and public code run it "
        "(core/rivals.py; their settings under optimizer.ape, apo, opro); pe2: the point of the design space the GPO "
        "paper maps it to (direction feedback, update edit)",
    )
    ape: ApeSettings = Field(default=ApeSettings(), description="method ape's settings")
    apo: ApoSettings = Field(default=ApoSettings(), description="method apo's settings")
    opro: OproSettings = Field(default=OproSettings(), description="method opro's settings")
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

    @model_validator(mode="before")
    @classmethod
    def _pe2_point(cls, data: Any) -> Any:
        """method pe2 is a point of the design space: direction feedback, update edit, unless set (then checked)."""
        if isinstance(data, dict) and data.get("method") == "pe2":
            data = {"direction": "feedback", "update": "edit", **data}
        return data

    @model_validator(mode="after")
    def _method_settings(self) -> OptimizerSettings:
        # "Set" is "not its default" (a config written back in full, a run directory's, names every field).
        fields_ = type(self).model_fields
        changed = {name for name in fields_ if getattr(self, name) != fields_[name].get_default(call_default_factory=True)}
        if self.method in RIVAL_METHODS:
            alien = [name for name in GPO_ONLY_SETTINGS if name in changed]
            if self.method == "apo" and "candidates" in changed:
                alien.insert(0, "candidates")
            if alien:
                raise ValueError(f"optimizer.{alien[0]} is not a setting of method {self.method} (its paper does not "
                                 "define it): remove it or use method gpo")
        for other in RIVAL_METHODS:
            if other in changed and other != self.method:
                raise ValueError(f"optimizer.{other} holds method {other}'s settings, but optimizer.method is "
                                 f"{self.method}")
        if self.method == "pe2" and (self.direction != "feedback" or self.update != "edit"):
            raise ValueError("method pe2 is the design-space point direction feedback, update edit: remove "
                             "optimizer.direction / optimizer.update or use method gpo")
        return self

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


# --- a task's own metric (tasks/metric_specs.py scores these; docs/metrics.md) ------------------------------


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
                        Discriminator("check")]


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


MetricSpec = Annotated[PythonMetric | ChecksMetric | JudgeMetric, Discriminator("kind")]


def _built_in_or_spec(value: Any) -> str:
    """A mapping (or a model) is a spec, anything else a built-in kind: an error then names what was meant."""
    return "spec" if isinstance(value, (dict, PythonMetric, ChecksMetric, JudgeMetric)) else "built_in"


# What a task source's `metric` may be: a built-in kind (vocabulary.MetricKind) or a spec.
TaskMetric = Annotated[Annotated[MetricKind, Tag("built_in")] | Annotated[MetricSpec, Tag("spec")],
                       Discriminator(_built_in_or_spec)]


class TaskSource(_Frozen):
    """A user's own task: GPO folder layout, JSONL, CSV, Parquet, a Hugging Face dataset, or the official
    BIG-Bench-Hard JSON. Tables come as a folder of named splits or one table carved by a seeded shuffle."""

    name: str = Field(min_length=1, description="the task's name, as `tasks` lists it")
    format: Literal["gpo", "jsonl", "csv", "parquet", "hf", "bbh_json"] = Field(
        default="gpo", description="how path (or dataset) is read"
    )
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
    input_field: str = Field(default="input", description="the column holding the input (or input_template)")
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
    eval_size: int = Field(default=48, ge=1, description="one table: rows carved into the eval split")
    split_seed: int = Field(default=0, description="one table: the seed of the shuffle that carves it")

    @model_validator(mode="after")
    def _source_is_consistent(self) -> TaskSource:
        if self.format == "hf":
            if (self.path is None) == (self.dataset is None):
                raise ValueError("format hf needs one of path (a save_to_disk folder) or dataset (a hub name)")
        elif self.path is None:
            raise ValueError(f"format {self.format} needs path")
        elif self.dataset is not None or self.subset is not None:
            raise ValueError("dataset and subset are for format hf")
        if self.splits is not None and set(self.splits) != {"train", "eval", "test"}:
            raise ValueError("splits needs all of train, eval and test")
        # answer_field at its default counts as not given: config.json holds it beside answer_fields, and a resume
        # validates that dump again.
        explicit_answer_field = ("answer_field" in self.model_fields_set
                                 and self.answer_field not in (None, type(self).model_fields["answer_field"].default))
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
    # None: sized for the run (runtime/local_cluster.py): one per 2 CPUs (2 to 8); a small run (at most 3 tasks) on
    # one machine (a cluster gpo-ray starts, or a single-node one the driver is on) has none of either: its driver
    # asks the optimizer and scores, and its only actor is the trajectory memory.
    num_refiners: int | None = Field(default=None, gt=0, description="refiner actors; None: sized for the run, and "
                                     "none when a small run on one machine asks the optimizer from its driver")
    num_evaluators: int | None = Field(default=None, gt=0, description="evaluator actors; None: sized as num_refiners "
                                       "is, and none when a small run on one machine scores in its driver")
    # Deprecated: the task model's max_in_flight is the one knob (a warning is logged when this is set). None: sized
    # for the run from it (runtime/local_cluster.py): the evaluator's share of the cap, per endpoint it calls.
    evaluator_max_in_flight: int | None = Field(default=None, gt=0, description="deprecated: examples one evaluator "
                                                "scores at once; None (the default) follows task_model.max_in_flight")
    # The first calls begin in the driver while Ray and the actors start (controller/warm_start.py); a run that
    # joins a cluster by address never does this.
    warm_start: bool = True
    chroma_host: str | None = Field(default=None, description="Chroma server host; None = embedded store")
    chroma_port: int = Field(default=8000, gt=0, lt=65536, description="the Chroma server's port")
    chroma_token_env: str | None = Field(default=None, description="NAME of the variable holding the Chroma "
                                         "server's token")
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

    kind: Literal["minilm", "openai"] = Field(default="minilm", description="the bundled MiniLM (offline), or an "
                                              "OpenAI-compatible /v1/embeddings endpoint")
    base_url: str | None = Field(default=None, description="kind openai: the endpoint")
    model: str | None = Field(default=None, description="kind openai: the embedding model")
    api_key_env: str | None = Field(default=None, description="kind openai: NAME of the variable holding the key")

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
    mlflow_experiment: str = Field(default="gpo-ray", description="the MLflow experiment a run logs to")


class RunConfig(_Frozen):
    preset: Literal["paper"] | None = Field(
        default=None, description="paper: every setting as the official GPO code runs it, under your own settings"
    )
    tasks: list[str] = Field(min_length=1, description="task names or globs, e.g. bbh/navigate, mmlu/*")
    data_dir: Path | None = Field(default=None, description="the GPO folder layout the named benchmark tasks are read "
                                  "from, e.g. ../shared/datasets/gpo")
    task_sources: list[TaskSource] = Field(default=[], description="your own tasks: CSV, JSONL, Parquet, Hugging "
                                           "Face, GPO folders, BBH JSON")
    task_model: LLMRoleConfig = Field(default=LLMRoleConfig(**ROLE_DEFAULTS[ConfigRole.TASK_MODEL]),
                                      description="the model that answers the task's examples under the prompt")
    optimizer_model: LLMRoleConfig = Field(default=LLMRoleConfig(**ROLE_DEFAULTS[ConfigRole.OPTIMIZER_MODEL]),
                                           description="the model that writes candidate prompts, feedback, summaries")
    judge_model: LLMRoleConfig = Field(default=LLMRoleConfig(**ROLE_DEFAULTS[ConfigRole.JUDGE_MODEL]),
                                       description="the LLM judge of `kind: judge` metrics; unused otherwise")
    optimizer: OptimizerSettings = Field(default=OptimizerSettings(), description="the GPO loop's settings")
    cluster: ClusterSettings = Field(default=ClusterSettings(), description="where things run; outside the "
                                     "fingerprint")
    budget: BudgetSettings = Field(default=BudgetSettings(), description="when a run stops early")
    embedder: EmbedderConfig = Field(default=EmbedderConfig(), description="how prompts are embedded for "
                                     "relevance retrieval")
    tracking: TrackingSettings = Field(default=TrackingSettings(), description="live metrics and MLflow")
    run_dir: Path | None = Field(default=None, description="default: runs/<time>-<id> in the current folder")
    cache: bool = Field(default=True, description="the run's response cache (RUN_DIR/cache): a retried call or a "
                        "resume re-sends only what was in flight")

    @model_validator(mode="before")
    @classmethod
    def _role_defaults_and_preset(cls, data: Any) -> Any:
        """A role given as an LLMRoleConfig built in code counts only the fields set on it; then presets.py layers."""
        if not isinstance(data, dict):
            return data
        return layered_config({k: (v.model_dump(exclude_unset=True) if k in ROLES and isinstance(v, LLMRoleConfig)
                                   else v) for k, v in data.items()})

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
        """What must match for `resume` to continue a run (everything except where it runs): fingerprint.py."""
        return fingerprint_of(self.public_dict())
