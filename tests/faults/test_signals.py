"""Signals as a Kubernetes pod gets them: SIGTERM (`kubectl delete pod`, `timeout`) stops `gpo-ray optimize` as
Ctrl-C (SIGINT) does - completed steps kept, results.json saying "stopped", one gpo-ray line naming the run directory to
resume, the shell's exit code 143, no stack dump from Ray's C++ signal handler, none of its processes left -
and `gpo-ray resume` then finishes the run with the undisturbed run's prompts and scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpo_ray.cli import main
from gpo_ray.runtime.processes import process_alive

from tests.faults.harness import (
    assert_same_as_undisturbed,
    checkpoint_steps,
    json_tasks,
    run_config,
    two_fakes,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc): Ray's GCS, raylet, workers and agents of a local cluster."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# What the console says and the shell's exit code, per signal.
STOPPED_BY = {signal.SIGTERM: ("gpo-ray: terminated (SIGTERM); ", 143), signal.SIGINT: ("gpo-ray: interrupted; ", 130)}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding a process's children needs procfs")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_naming_its_directory_and_resume_finishes_it(tmp_path, undisturbed, signum):
    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        cfg_file = tmp_path / "run.yaml"
        cfg_file.write_text(json.dumps(config.public_dict()))
        # As a user runs it: its own process and its own new local Ray cluster, whose handlers Ray installs.
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
        proc = subprocess.Popen([sys.executable, "-m", "gpo_ray", "optimize", str(cfg_file)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            opt.hold_generation(2)  # steps 0 and 1 are checkpointed, step 2's candidates are being generated
            below = descendants(proc.pid)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        opt.resume()
        console = out + err
        says, exit_code = STOPPED_BY[signum]
        assert proc.returncode == exit_code, console[-3000:]
        assert "AbslFailureSignalHandler" not in console and "*** SIGTERM" not in console, console[-3000:]
        assert "Traceback" not in console and "(raylet)" not in console, console[-3000:]
        (line,) = [line for line in console.splitlines() if line.startswith("gpo-ray")]
        assert line.startswith(says), line
        assert f"`gpo-ray resume {config.run_dir}` continues" in line and "RUN_DIR" not in line, line
        assert checkpoint_steps(config.run_dir) == [0, 1], "the completed steps are kept, nothing more"
        assert json.loads((config.run_dir / "results.json").read_text())["status"] == "stopped"
        assert below, "the run had started Ray's processes"
        wait_until(lambda: not any(process_alive(p) for p in below), what="the run's Ray processes to exit")

        assert main(["resume", str(config.run_dir), "--quiet"]) == 0
    assert_same_as_undisturbed(config.run_dir, json_tasks(config.run_dir), undisturbed.tasks)
