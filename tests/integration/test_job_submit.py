"""`ray job submit -- gpo-ray optimize ...` and `gpo-ray optimize --address ...` on the same running cluster
give the same result: a job is just a driver that Ray starts on the head with RAY_ADDRESS set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from gpo_ray.testing import ThreadedFake
from tests.ray_head import RAY, free_port, own_ray_head

pytestmark = [pytest.mark.slow, pytest.mark.ray]  # a Ray head of its own (`ray start --head`)


def test_job_submit_and_address_behave_the_same(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    gcs, dash = free_port(), free_port()

    def dashboard_answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
            return True
        except OSError:
            return False

    with own_ray_head(port=gcs, env=env, ready=dashboard_answers,
                      options=("--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                               "--include-dashboard", "true")):
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
    submitted = json.loads((tmp_path / "job" / "results.json").read_text())
    direct = json.loads((tmp_path / "driver" / "results.json").read_text())
    assert submitted["status"] == direct["status"] == "completed"
    assert submitted["tasks"] == direct["tasks"]
    assert submitted["tasks"]["example/arithmetic"]["steps"]
