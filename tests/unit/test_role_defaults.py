"""Each role keeps its own sampling settings when a user names its endpoint, model or key (issue 23): the optimizer
samples at temperature 1.0, the task model's replies are capped at 256 tokens, on every way a config is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.cli import without_none, build_parser, overrides_from_args
from gpo_ray.config import (
    ROLE_DEFAULTS,
    LLMRoleConfig,
    RunConfig,
    load_config,
    sampling_settings,
)
from gpo_ray.grid import grid_from_dict

OPENAI = "https://api.openai.com/v1"
OPTIMIZER = ROLE_DEFAULTS["optimizer_model"]
TASK = ROLE_DEFAULTS["task_model"]


def sampled(config: RunConfig) -> tuple[tuple, tuple]:
    return ((config.optimizer_model.temperature, config.optimizer_model.max_tokens),
            (config.task_model.temperature, config.task_model.max_tokens))


DEFAULTS = ((OPTIMIZER["temperature"], OPTIMIZER["max_tokens"]), (TASK["temperature"], TASK["max_tokens"]))


def test_the_documented_role_defaults():
    assert DEFAULTS == ((1.0, 256), (0.0, 256))
    assert sampled(RunConfig(tasks=["example/arithmetic"])) == DEFAULTS


def test_the_readme_openai_command_keeps_each_roles_sampling():
    args = build_parser().parse_args(["optimize", "--task", "bbh/navigate", "--base-url", OPENAI,
                                      "--model", "gpt-4o-mini", "--api-key-env", "OPENAI_API_KEY"])
    config = load_config(None, overrides=without_none(overrides_from_args(args)))
    assert config.optimizer_model.base_url == OPENAI and config.optimizer_model.model == "gpt-4o-mini"
    assert config.task_model.api_key_env == "OPENAI_API_KEY"
    assert sampled(config) == DEFAULTS


def test_an_optimizer_endpoint_flag_alone_keeps_the_optimizers_temperature():
    args = build_parser().parse_args(["optimize", "--task", "bbh/navigate", "--optimizer-base-url", OPENAI,
                                      "--optimizer-model", "gpt-4o"])
    config = load_config(None, overrides=without_none(overrides_from_args(args)))
    assert config.optimizer_model.model == "gpt-4o" and config.task_model.is_embedded
    assert sampled(config) == DEFAULTS


def test_yaml_role_blocks_that_name_only_endpoints(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [example/arithmetic]\n"
                   f"task_model: {{base_url: '{OPENAI}', model: gpt-4o-mini}}\n"
                   f"optimizer_model:\n  endpoints: [{{base_url: '{OPENAI}'}}]\n  model: gpt-4o\n")
    assert sampled(load_config(cfg)) == DEFAULTS


def test_what_a_user_writes_wins_and_a_null_max_tokens_means_no_cap(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [example/arithmetic]\n"
                   "optimizer_model: {model: m, temperature: 0.7}\n"
                   "task_model: {model: m, max_tokens: null, temperature: 0.2}\n")
    assert sampled(load_config(cfg)) == ((0.7, 256), (0.2, None))


@pytest.mark.parametrize("make", [
    lambda **kw: LLMRoleConfig(**kw),
    lambda **kw: dict(kw),
], ids=["LLMRoleConfig", "dict"])
def test_python_api_roles_given_as_objects_or_dicts(make):
    config = RunConfig(tasks=["example/arithmetic"],
                       task_model=make(base_url=OPENAI, model="gpt-4o-mini"),
                       optimizer_model=make(base_url=OPENAI, model="gpt-4o", api_key_env="OPENAI_API_KEY"))
    assert sampled(config) == DEFAULTS
    explicit = RunConfig(tasks=["example/arithmetic"],
                         optimizer_model=make(base_url=OPENAI, temperature=0.0, max_tokens=64))
    assert sampled(explicit) == ((0.0, 64), DEFAULTS[1])


def test_paper_preset_with_a_users_endpoints():
    args = build_parser().parse_args(["optimize", "--preset", "paper", "--task", "bbh/navigate",
                                      "--base-url", OPENAI, "--model", "gpt-3.5-turbo"])
    config = load_config(None, overrides=without_none(overrides_from_args(args)))
    # The official optimize.py: optimizer 1.0 with 512 decode steps, scorer 0.0 with 256.
    assert sampled(config) == ((1.0, 512), (0.0, 256))
    assert config.optimizer_model.structured_output is False
    # and a key the user writes still wins over the preset
    mine = load_config(None, overrides={"preset": "paper", "tasks": ["bbh/navigate"],
                                        "optimizer_model": {"base_url": OPENAI, "max_tokens": 300}})
    assert sampled(mine) == ((1.0, 300), (0.0, 256))


def test_a_config_saved_and_read_back_is_the_same_run():
    """config.json holds every field; reading it back (resume) keeps the same sampling and fingerprint."""
    config = RunConfig(tasks=["example/arithmetic"], optimizer_model={"base_url": OPENAI, "model": "gpt-4o"})
    again = RunConfig.model_validate(config.public_dict())
    assert sampled(again) == sampled(config) and again.fingerprint() == config.fingerprint()


def test_sweep_variants_that_name_only_endpoints(tmp_path: Path):
    grid = grid_from_dict({
        "base": {"tasks": ["example/arithmetic"],
                 "task_model": {"base_url": OPENAI, "model": "m"}, "optimizer_model": {"base_url": OPENAI}},
        "variants": {"plain": {}, "cool": {"optimizer_model": {"temperature": 0.5}},
                     "capped": {"task_model": {"max_tokens": 32}}},
    }, folder=tmp_path)
    runs = {r.variant: r.config for r in grid.sub_runs(tmp_path / "sweep")}
    assert sampled(runs["plain"]) == DEFAULTS
    assert sampled(runs["cool"]) == ((0.5, 256), DEFAULTS[1])
    assert sampled(runs["capped"]) == (DEFAULTS[0], (0.0, 32))


def test_sampling_settings_name_each_roles_model():
    config = RunConfig(tasks=["example/arithmetic"], optimizer_model={"base_url": OPENAI, "model": "gpt-4o"})
    assert sampling_settings(config) == {
        "task_model": {"model": "embedded", "temperature": 0.0, "max_tokens": 256},
        "optimizer_model": {"model": "gpt-4o", "temperature": 1.0, "max_tokens": 256},
    }


def test_plan_prints_what_each_role_will_be_sent(capsys):
    from gpo_ray.cli import main

    flags = ["--task", "example/arithmetic", "--base-url", OPENAI, "--model", "gpt-4o-mini"]
    assert main(["plan", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sampling"]["optimizer_model"] == {
        "model": "gpt-4o-mini", "temperature": 1.0, "max_tokens": 256}
    assert main(["plan", *flags, "--preset", "paper", "--show-meta-prompt"]) == 0
    assert ("sampling: task_model gpt-4o-mini at temperature 0.0, max_tokens 256; optimizer_model gpt-4o-mini at "
            "temperature 1.0, max_tokens 512") in capsys.readouterr().out
