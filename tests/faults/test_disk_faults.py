"""The run directory's disk fails mid-run: it fills up, or turns read-only. The run stops with exit 1 and one
clear line, the completed steps stay readable, and `resume` finishes the run once the disk is back.

Root ignores file permissions, so the faults are real mounts: a small tmpfs that the test fills, and a
read-only bind mount laid over the run directory (files already open stay writable, as after a remount;
every new file and every new sqlite connection is refused). Skipped where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpo_ray.cli import main
from gpo_ray.runtime.run_dir import RunDirectory

from tests.faults.harness import (
    TASK,
    BackgroundRun,
    assert_same_as_undisturbed,
    checkpoint_steps,
    json_tasks,
    run_config,
    two_fakes,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.strip() or proc.returncode}); needs root in a mount namespace")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    path.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it (deleting it frees the space)."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        _umount(path)


def _start_run(tmp_path: Path, run_dir: Path, opt, task) -> tuple[BackgroundRun, object]:
    config = run_config(run_dir, optimizer_url=opt.base_url, task_url=task.base_url)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(json.dumps(config.public_dict()))
    return BackgroundRun(lambda: main(["optimize", str(cfg_file), "--quiet"])), config


def _completed_steps(config) -> list[int]:
    return [r.step for r in RunDirectory(config.run_dir).completed_steps(TASK, fingerprint=config.fingerprint())]


def test_disk_full_mid_run_stops_cleanly_and_resume_finishes(tmp_path, capsys, undisturbed):
    with small_disk(tmp_path / "disk") as disk, two_fakes() as (opt, task):
        opt.pause()
        run, config = _start_run(tmp_path, disk / "run", opt, task)
        opt.hold_generation(2)  # steps 0 and 1 are checkpointed
        filler = fill(disk)
        opt.resume()
        assert run.join() == 1
        err = capsys.readouterr().err.strip()
        kept = _completed_steps(config)  # readable: no torn or half-written record
        assert not list(config.run_dir.glob(".*.tmp")), "no half-written file left behind"

        filler.unlink()
        assert main(["resume", str(config.run_dir), "--quiet"]) == 0
        assert_same_as_undisturbed(config.run_dir, json_tasks(config.run_dir), undisturbed.tasks)  # (on the tmpfs)

    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    # The first writer to hit the full disk names it: a state file (the OS) or the trajectory memory (sqlite).
    assert ("No space left on device" in err or "disk is full" in err) and str(config.run_dir) in err, err
    assert "resume" in err, err
    assert kept[:2] == [0, 1] and kept == list(range(len(kept))), kept


def test_run_dir_turning_read_only_mid_run_stops_cleanly_and_resume_finishes(tmp_path, capsys, undisturbed):
    run_dir = tmp_path / "run"
    with two_fakes() as (opt, task):
        opt.pause()
        run, config = _start_run(tmp_path, run_dir, opt, task)
        opt.hold_generation(2)
        with read_only(run_dir):
            opt.resume()
            code = run.join()
        err = capsys.readouterr().err.strip()
        kept = _completed_steps(config)
        assert not list(run_dir.glob(".*.tmp")), "no half-written file left behind"
        assert main(["resume", str(run_dir), "--quiet"]) == 0

    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "Read-only file system" in err and str(run_dir) in err and "resume" in err, err
    assert kept == [0, 1], kept
    assert checkpoint_steps(run_dir)[:2] == [0, 1]
    assert_same_as_undisturbed(run_dir, json_tasks(run_dir), undisturbed.tasks)
