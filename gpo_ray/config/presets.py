"""What is laid under a user's settings before the schema validates them: each role's own sampling defaults, then a
preset (`preset: paper`), then the user's file and flags. Plain dicts: the schema (schema.py) calls `layered_config`
before it validates a RunConfig."""

from __future__ import annotations

from typing import Any

from gpo_ray.vocabulary import ConfigRole

# `preset: paper`: GPO as its authors ran it (RUCAIBox/GPO at 765df20, GPO.sh and optimize.py). Laid under the
# user's own settings: a key given in the file or by a flag still wins. docs/paper-preset.md lists each key.
# Written as a config file would be.
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
    ConfigRole.TASK_MODEL: {"temperature": 0.0, "max_tokens": 256},
    ConfigRole.OPTIMIZER_MODEL: {"temperature": 1.0, "max_tokens": 256},
    ConfigRole.JUDGE_MODEL: {"temperature": 0.0, "max_tokens": 200},  # a score and a reason: greedy, so a rerun agrees
}
ROLES = tuple(ROLE_DEFAULTS)


def layered_config(data: dict[str, Any]) -> dict[str, Any]:
    """The role defaults, then the preset, then what the user gave (each role's block a dict of the fields given).
    In a role's block an explicit null wins (e.g. `max_tokens: null`, no cap); elsewhere null means not given, as
    for CLI flags."""
    preset = PRESETS.get(data["preset"], {}) if isinstance(data.get("preset"), str) else {}
    out = deep_merge(preset, {k: v for k, v in data.items() if k not in ROLES})
    for role in ROLES:
        given = data.get(role, {})
        if not isinstance(given, dict):  # not a mapping: let validation say so
            out[role] = given
            continue
        out[role] = {**ROLE_DEFAULTS[role], **preset.get(role, {}), **given}
    return out


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
