"""`ray job submit -- gpo-ray optimize ...` and `gpo-ray optimize --address ...` on the same running cluster
give the same result: a job is just a driver that Ray starts on the head with RAY_ADDRESS set."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gpo_ray.testing import ThreadedFake

pytestmark = [pytest.mark.slow, pytest.mark.ray]  # a Ray head of its own (`ray start --head`)
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_submit_and_address_behave_the_same(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    gcs, dash = free_port(), free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--num-cpus", "2", "--disable-usage-stats",
         # Its own agent ports: the test session's cluster on this machine holds the default ones.
         "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
         "--ray-client-server-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except OSError:
                assert head.poll() is None, head.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the Ray head did not come up"
                time.sleep(1)
        with ThreadedFake() as fake:
            cfg = tmp_path / "run.yaml"
            cfg.write_text(
                "tasks: [example/arithmetic]\n"
                f"task_model: {{base_url: '{fake.base_url}', model: fake}}\n"
                f"optimizer_model: {{base_url: '{fake.base_url}', model: fake}}\n"
                "optimizer: {epochs: 1, batch_size: 4, candidates: 2}\n"
            )
            for _ in range(15):  # the dashboard answers before its job agent is ready
                job = subprocess.run(
                    [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--", sys.executable, "-m",
                     "gpo_ray", "optimize", str(cfg), "--run-dir", str(tmp_path / "job"), "--quiet"],
                    env=env, capture_output=True, text=True, timeout=600,
                )
                if "No available agent" not in job.stderr + job.stdout:
                    break
                time.sleep(2)
            assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
            driver = subprocess.run(
                [sys.executable, "-m", "gpo_ray", "optimize", str(cfg), "--run-dir", str(tmp_path / "driver"),
                 "--address", f"127.0.0.1:{gcs}", "--quiet"],
                env=env, capture_output=True, text=True, timeout=600,
            )
            assert driver.returncode == 0, driver.stderr[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    submitted = json.loads((tmp_path / "job" / "results.json").read_text())
    direct = json.loads((tmp_path / "driver" / "results.json").read_text())
    assert submitted["status"] == direct["status"] == "completed"
    assert submitted["tasks"] == direct["tasks"]
    assert submitted["tasks"]["example/arithmetic"]["steps"]
