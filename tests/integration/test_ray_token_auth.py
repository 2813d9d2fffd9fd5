"""`gpo-ray optimize --address` on a Ray cluster with token authentication (RAY_AUTH_MODE=token on its head):
with the cluster's token in the environment it runs, and the token is in none of its files or output; without
it, or with a wrong one, it stops at once with one line and exit code 2, before anything is written.

The head is this test's own (`ray start --head --block` in its own process group, temp dir and HOME, so the
shared test cluster and ~/.ray/auth_token of this machine are not touched), stopped by its process group."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpo_ray.runtime.ray_auth import head_accepts
from gpo_ray.testing import ThreadedFake
from tests.ray_head import free_port, own_ray_head
from tests.faults.test_security import files_holding

pytestmark = [pytest.mark.slow, pytest.mark.ray]  # a Ray head of its own, with token authentication
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any Ray token setting or address, HOME a directory with no ~/.ray/auth_token."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
    return env | {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"} | extra


@pytest.fixture(scope="module")
def auth_head() -> Iterator[tuple[str, str, Path]]:
    """(address, token, temp dir) of a one-node Ray cluster with token authentication; the token is given to the
    head in a file (RAY_AUTH_TOKEN_PATH), with the trailing newline `echo` would leave."""
    tmp = Path(tempfile.mkdtemp(prefix="gta", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = tmp / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    token_file = tmp / "head_token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = free_port()
    env = clean_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    address = f"127.0.0.1:{port}"
    try:
        with own_ray_head(port=port, env=env, ready=lambda: head_accepts(address, token, timeout_s=2),
                          options=("--temp-dir", str(tmp / "ray"), "--include-dashboard", "false")):
            yield address, token, tmp
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def write_config(path: Path, base_url: str) -> Path:
    path.write_text(
        "tasks: [example/arithmetic]\n"
        f"task_model: {{base_url: '{base_url}', model: fake}}\n"
        f"optimizer_model: {{base_url: '{base_url}', model: fake}}\n"
        "optimizer: {epochs: 1, batch_size: 4, candidates: 2}\n"
    )
    return path


def optimize(cfg: Path, run_dir: Path, address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpo_ray", "optimize", str(cfg), "--run-dir", str(run_dir), "--address", address,
         "--quiet"],
        check=False, env=env, capture_output=True, text=True, timeout=600,
    )


def test_a_run_joins_with_the_token_from_the_environment(auth_head, tmp_path):
    """RAY_AUTH_TOKEN alone (no RAY_AUTH_MODE: gpo-ray turns token mode on when the cluster asks for it)."""
    address, token, _ = auth_head
    home = tmp_path / "home"
    home.mkdir()
    with ThreadedFake() as fake:
        cfg = write_config(tmp_path / "run.yaml", fake.base_url)
        proc = optimize(cfg, tmp_path / "run", address, clean_env(home, RAY_AUTH_TOKEN=token))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "results.json").is_file()
    assert token not in proc.stdout and token not in proc.stderr
    assert files_holding(token, tmp_path / "run") == []

    # resume and sweep join the same way: without the token, the same one line.
    resume = subprocess.run([sys.executable, "-m", "gpo_ray", "resume", str(tmp_path / "run"), "--address", address],
                            check=False, env=clean_env(home), capture_output=True, text=True, timeout=300)
    grid = tmp_path / "grid.yaml"
    grid.write_text("base:\n" + "".join(f"  {line}\n" for line in cfg.read_text().splitlines())
                    + "axes: {optimizer.candidates: [2, 3]}\n")
    sweep = subprocess.run([sys.executable, "-m", "gpo_ray", "sweep", str(grid), "--run-dir", str(tmp_path / "sweep"),
                            "--address", address], check=False, env=clean_env(home, RAY_AUTH_TOKEN="wrong-token"),
                           capture_output=True, text=True, timeout=300)
    for proc, said in ((resume, "no token was found"), (sweep, "rejected the token from RAY_AUTH_TOKEN")):
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr, proc.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({}, "no token was found (neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set)"),
        ({"RAY_AUTH_MODE": "token"}, "no token was found (not in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "),
        ({"RAY_AUTH_TOKEN": "wrong-" + "0" * 32}, "rejected the token from RAY_AUTH_TOKEN (not this cluster's token)"),
        ({"RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE is 'disabled' here"),
    ],
    ids=["no-token", "token-mode-no-token", "wrong-token", "auth-disabled-here"],
)
def test_a_missing_or_wrong_token_stops_the_run_with_one_line(auth_head, tmp_path, given, said):
    address, token, _ = auth_head
    home = tmp_path / "home"
    home.mkdir()
    started = time.monotonic()
    proc = optimize(write_config(tmp_path / "run.yaml", "http://127.0.0.1:9/v1"), tmp_path / "run", address,
                    clean_env(home, **given))
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"gpo-ray: error: cannot join the Ray cluster at {address} (from --address / cluster.address): "
                               "it requires token authentication and "), lines[0]
    assert said in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
    assert time.monotonic() - started < 30, "not Ray's twenty seconds of retries"
    assert not (tmp_path / "run").exists(), "nothing is written before the cluster is joined"
    assert token not in proc.stderr


@pytest.mark.parametrize("mode", ["token", None])
def test_the_token_file_is_sent_only_with_token_mode(auth_head, tmp_path, mode):
    """~/.ray/auth_token (Ray's token file) is used with RAY_AUTH_MODE=token; without it, it stays home: every local
    ray.init writes one, and it is no key to send to whatever address was given."""
    address, token, _ = auth_head
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)
    env = clean_env(home, **({"RAY_AUTH_MODE": mode} if mode else {}), PYTHONPATH=str(Path(__file__).parents[2]))
    check = (f"from gpo_ray.runtime.ray_auth import check_ray_auth; check_ray_auth({address!r}, source='--address');"
             "import os; print(os.environ.get('RAY_AUTH_MODE'))")
    proc = subprocess.run([sys.executable, "-c", check], check=False, env=env, capture_output=True, text=True, timeout=60)
    if mode == "token":
        assert proc.returncode == 0 and proc.stdout.strip() == "token", proc.stderr
    else:
        assert proc.returncode != 0 and "ClusterAuthFailed" in proc.stderr and "no token was found" in proc.stderr
