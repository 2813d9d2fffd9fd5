"""Fingerprints of a few configs, as gpo-ray computed them before config.py became a package (main at a0975f1).

A run resumes only when its config's fingerprint is the one in its config.json: a change here means runs already
written no longer resume. Change a pinned value only with a migration for those runs.
"""

from __future__ import annotations

import pytest

from gpo_ray.config import LLMRoleConfig, RunConfig, fingerprint_of

CONFIGS = {
    "default": {"tasks": ["bbh/navigate"]},
    "paper_preset": {"preset": "paper", "tasks": ["bbh/navigate", "bbh/snarks"]},
    "judge_source": {
        "tasks": ["replies"],
        "task_sources": [{"name": "replies", "format": "jsonl", "path": "data/replies.jsonl", "answer_field": None,
                          "metric": {"kind": "judge", "rubric": "A polite, correct reply.", "scale": "1..5"}}],
        "judge_model": {"base_url": "http://127.0.0.1:8787/v1", "model": "judge", "hedge": {"enabled": True}},
    },
    "feedback_variant": {
        "tasks": ["bbh/navigate"],
        "optimizer": {"direction": "feedback", "momentum": {"content": "feedback", "update": "summarize"},
                      "update": "edit", "budget_in_prompt": False, "candidate_scoring": "eval",
                      "adaptive_evaluation": {"enabled": True, "first_round": 4}},
    },
    "endpoints_and_specs": {
        "tasks": ["orders", "tickets"],
        "task_model": LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m", transport="openai", read_timeout_s=5),
        "optimizer_model": {"endpoints": [{"base_url": "http://a:1/v1", "resource": "gpu-a"}], "model": "o",
                            "api_key_env": "OPENAI_API_KEY", "max_tokens": None},
        "task_sources": [
            {"name": "orders", "format": "csv", "path": "orders.csv", "input_template": "Order: {text}",
             "answer_fields": ["item", "qty"], "placement": "system",
             "metric": {"kind": "checks", "checks": [{"check": "json", "schema": {"type": "object"}, "fields": ["item"]},
                                                     {"check": "regex", "pattern": "qty", "weight": 2}]}},
            {"name": "tickets", "format": "jsonl", "path": "t.jsonl",
             "metric": {"kind": "python", "function": "metric.py:score"}},
        ],
        "cluster": {"num_evaluators": 3}, "budget": {"max_calls": 100}, "tracking": {"mlflow": False},
        "run_dir": "runs/x", "cache": False,
    },
}

PINNED = {
    "default": "7122e940edb463c6",
    "paper_preset": "53dced6447dabc01",
    "judge_source": "845522c193767467",
    "feedback_variant": "b4cdb629d72d57cd",
    "endpoints_and_specs": "fd1a977b1e2c50d6",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_fingerprint_is_the_one_runs_were_written_with(name: str) -> None:
    assert RunConfig(**CONFIGS[name]).fingerprint() == PINNED[name]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_config_read_back_from_config_json_has_the_same_fingerprint(name: str) -> None:
    """What `resume` does: config.json's config validated again, its fingerprint compared with the recorded one."""
    assert RunConfig.model_validate(RunConfig(**CONFIGS[name]).public_dict()).fingerprint() == PINNED[name]


def test_where_and_how_a_run_runs_leave_the_fingerprint_alone() -> None:
    moved = dict(CONFIGS["judge_source"], run_dir="elsewhere", cluster={"num_refiners": 4, "warm_start": False},
                 budget={"max_tokens": 10}, tracking={"ray_metrics": False},
                 judge_model={"base_url": "http://127.0.0.1:8787/v1", "model": "judge", "transport": "openai",
                              "read_timeout_s": 30, "max_reply_bytes": 1000, "rate_limited_retry_s": 5})
    assert RunConfig(**moved).fingerprint() == PINNED["judge_source"]


def test_fingerprint_of_leaves_the_dict_it_is_given_as_it_was() -> None:
    public = RunConfig(**CONFIGS["endpoints_and_specs"]).public_dict()
    before = repr(public)
    assert fingerprint_of(public) == PINNED["endpoints_and_specs"]
    assert repr(public) == before
