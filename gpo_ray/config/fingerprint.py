"""A run's fingerprint: what must match for `resume` to continue a run (everything except where and how it runs).

It is a hash of the config's public dict (the `config` of config.json) without the settings that may change
between a run and its resume. Every rule here keeps the fingerprints of runs already written: change one and those
runs no longer resume (tests/unit/test_fingerprint_pinned.py holds a few).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gpo_ray.config.presets import ROLES
from gpo_ray.vocabulary import ConfigRole

# Where a run runs and how it reports: a resume may change them.
WHERE_IT_RUNS = ("run_dir", "cluster", "budget", "tracking")

# Role settings that say how calls are sent, not what is asked: outside the fingerprint, so a resume may change them.
HOW_CALLS_ARE_SENT = ("transport", "read_timeout_s", "idle_read_timeout_s", "max_reply_bytes", "hedge",
                      "rate_limited_retry_s", "adaptive_concurrency")

# Role settings whose default became "sized at run time" (None) after runs were written: None hashes as the value
# the default stood for then, so a run with the default still has the fingerprint it was written with. (The role's
# max_in_flight: 8 requests per actor, before it became the whole run's cap with a default per kind of endpoint.)
SIZED_AT_RUN_TIME: dict[str, Any] = {"max_in_flight": 8}

# Optimizer settings added after runs were first written: left out of the fingerprint while they hold the value they
# had before they existed, so a run made by an older gpo-ray still resumes. Written out, not read from the schema's
# defaults: the value an old run ran with does not change when a default does.
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "train_limit": None,
    "answer_extraction": "single",
    "metric_variants": {},
    "candidate_scoring": "train_batch",
    "adaptive_evaluation": {"enabled": False, "first_round": 8, "eta": 2},
    "meta_prompt_style": "own",
    "retrieval_order": "score_ascending",
    "format_example_sampling": "first",
    "repeated_candidates": "drop",
    "update": "generate",
    "budget_in_prompt": True,
    "direction": "none",
    "momentum": {"content": "prompts", "update": "retrieve"},
    "candidate_extraction": "own",
    "selection": "own",
    "new_candidate_order": "seeded",
    "trace_scores": False,
    "end_choice": "question",
    "method": "gpo",
    "ape": {"num_demos": 5},
    "apo": {"beam_size": 4, "minibatch_size": 64, "n_gradients": 4, "errors_per_gradient": 4, "gradients_per_error": 1,
            "steps_per_gradient": 1, "mc_samples_per_step": 2, "max_expansion_factor": 8, "eval_rounds": 8,
            "eval_prompts_per_round": 8, "samples_per_eval": 32, "c": 1.0},
    "opro": {"max_instructions": 20, "score_threshold": 0.3, "exemplars": 3},
}


def has_judge_metric(public: dict[str, Any]) -> bool:
    """Whether a config's public dict has a task scored by an LLM judge (`metric: {kind: judge, ...}`)."""
    return any(isinstance(source.get("metric"), dict) and source["metric"].get("kind") == "judge"
               for source in public.get("task_sources") or ())


def fingerprint_of(public: dict[str, Any]) -> str:
    """The fingerprint of a config's public dict (RunConfig.public_dict(), which RunConfig.fingerprint() hashes)."""
    d = json.loads(json.dumps(public))  # a copy: the caller's dict stays as it is
    for key in WHERE_IT_RUNS:
        d.pop(key, None)
    if d.get("preset") is None:
        d.pop("preset", None)
    if not has_judge_metric(d):  # added with the judge: runs without one keep their fingerprint
        d.pop(ConfigRole.JUDGE_MODEL, None)
    for role in (r for r in ROLES if r in d):
        for how in HOW_CALLS_ARE_SENT:  # not what is asked
            d[role].pop(how, None)
        for key, before in SIZED_AT_RUN_TIME.items():
            if key in d[role] and d[role][key] is None:
                d[role][key] = before
    for key, default in NEUTRAL_DEFAULTS.items():
        if d["optimizer"].get(key) == default:
            d["optimizer"].pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
