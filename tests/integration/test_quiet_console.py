"""`gpo-ray optimize` as a user runs it, in a process of its own with its own Ray cluster: the console holds
only gpo-ray's lines (issue 12: Ray's token-auth notice at the start, `(raylet) Task ... failed` at the end of a
run that went well), and what Ray said is in the run's log instead."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpo_ray.testing import FakeLLMConfig, ThreadedFake


def _gpo_ray(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed command, with a new local Ray cluster (not the test session's) as a user gets it
    (`env`: variables to set on top)."""
    script = Path(sys.executable).with_name("gpo-ray")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gpo_ray"]
    # ray.init in this process may have set these; a user's shell has neither, and then Ray prints its notice.
    clean = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=clean | (env or {}), timeout=timeout)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / "driver.jsonl").read_text().splitlines() if line]


def _failed_ray_tasks(run_dir: Path) -> list[str]:
    """The calls Ray's driver-side log records as failed by Ray (cut short by a kill, sent to a dead actor).

    Whether Ray's `(raylet) Task ... failed` line for one reaches the console races Ray's shutdown; its log
    line is always written. The run's log says where Ray's session logs are."""
    (started,) = [e for e in _events(run_dir) if e["event"] == "ray_started"]
    (driver_log,) = Path(started["ray_logs"]).glob("python-core-driver-*.log")
    return [line for line in driver_log.read_text(errors="replace").splitlines() if "Task failed" in line]


def _write_config(path: Path, base_url: str, run_dir: Path, model_extra: str = "") -> Path:
    path.write_text(
        "tasks: [example/arithmetic]\n"
        f"task_model: {{base_url: '{base_url}', model: fake{model_extra}}}\n"
        f"optimizer_model: {{base_url: '{base_url}', model: fake{model_extra}}}\n"
        "optimizer: {epochs: 1, batch_size: 4, candidates: 2}\n"
        f"run_dir: {run_dir}\n"
    )
    return path


@pytest.mark.ray  # `gpo-ray optimize` in a child process, with a Ray of its own
def test_a_successful_run_prints_only_gpo_rays_lines_and_rays_go_to_the_run_log(tmp_path):
    run_dir = tmp_path / "run"
    with ThreadedFake(FakeLLMConfig(latency_s=0.01)) as fake:
        proc = _gpo_ray("optimize", str(_write_config(tmp_path / "run.yaml", fake.base_url, run_dir)))
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "Traceback" not in console
    assert "(raylet)" not in console
    assert [line for line in console.splitlines() if "failed" in line.lower()] == []
    assert "Token authentication" not in console and "RAY_AUTH_MODE" not in console
    assert "example/arithmetic" in proc.stdout and "best" in proc.stdout, "the summary is still printed"

    events = _events(run_dir)
    ray_said = [e["message"] for e in events if e["event"] == "library_log" and e["library"] == "ray"]
    assert any(m.startswith("Token authentication is enabled") for m in ray_said), ray_said
    assert _failed_ray_tasks(run_dir) == []


@pytest.mark.ray  # `gpo-ray optimize` in a child process, with a Ray of its own
def test_a_failed_run_prints_its_one_error_line_and_nothing_of_rays(tmp_path):
    """Calls still running when the run stops (retry backoffs) are cancelled, not cut short by ray.kill: Ray
    would retry those and print `(raylet) Task ... failed ... will be retried` after gpo-ray's error line."""
    run_dir = tmp_path / "run"
    flaky = FakeLLMConfig(latency_s=(0.05, 3.0), error_rate_500=0.3)  # slow calls still running when one fails
    with ThreadedFake(flaky) as fake:
        cfg = _write_config(tmp_path / "run.yaml", fake.base_url, run_dir, ", max_retries: 1")
        proc = _gpo_ray("optimize", str(cfg))
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console[-3000:]
    errors = [line for line in console.splitlines() if line.startswith("gpo-ray: error:")]
    assert len(errors) == 1 and "resume" in errors[0], console[-3000:]
    assert "Traceback" not in console and "(raylet)" not in console and "Token authentication" not in console
    assert _failed_ray_tasks(run_dir) == []
    (stopped,) = [e for e in _events(run_dir) if e["event"] == "actors_stopped"]
    assert stopped["not_answering"] == 0 and stopped["still_running"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("how", ["host:port", "ray://", "unresolvable host", "RAY_ADDRESS"])
def test_a_wrong_cluster_address_is_one_line_at_once_with_exit_2(tmp_path, how):
    """Ray's own client would retry such an address for minutes (ray://: half a minute), printing its C++ warnings
    on stderr. A mistyped address is bad input: exit 2, one line naming the address, where it came from and what
    was tried; nothing written."""
    port = _closed_port()
    address = {"host:port": f"127.0.0.1:{port}", "ray://": f"ray://127.0.0.1:{port}",
               "unresolvable host": "no-such-head.invalid:6379", "RAY_ADDRESS": f"127.0.0.1:{port}"}[how]
    cfg = _write_config(tmp_path / "run.yaml", "http://127.0.0.1:9/v1", tmp_path / "run")
    if how == "RAY_ADDRESS":
        proc = _gpo_ray("optimize", str(cfg), env={"RAY_ADDRESS": address}, timeout=60)
    else:
        proc = _gpo_ray("optimize", str(cfg), "--address", address, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"gpo-ray: error: cannot join the Ray cluster at {address} (from "), line
    assert ("RAY_ADDRESS" in line) == (how == "RAY_ADDRESS"), line
    tried = "does not resolve" if how == "unresolvable host" else f"TCP connect to 127.0.0.1:{port}: Connection refused"
    assert tried in line, line
    assert not (tmp_path / "run").exists(), "nothing is written for a run that cannot start"
