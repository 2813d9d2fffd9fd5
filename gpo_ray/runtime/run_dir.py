"""The run directory: config, append-only per-step checkpoints, results, usage.

Every completed step is appended (one JSON line, flushed and fsynced) before the next step starts, so a
killed run loses at most the step in flight. A torn last line (a kill mid-write) is dropped with a
warning; damage anywhere else, or a checkpoint from another config, is refused.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.atomic import write_json_atomic, write_text_atomic
from gpo_ray.config import RunConfig
from gpo_ray.core.results import StepResult
from gpo_ray.errors import InputError, RunFailed

CHECKPOINT_VERSION = 1


def default_run_dir() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{os.urandom(2).hex()}"


def task_file_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "__", task) + ".jsonl"


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.log = structlog.get_logger().bind(run_dir=str(self.path))

    # layout ---------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def results_file(self) -> Path:
        return self.path / "results.json"

    @property
    def usage_file(self) -> Path:
        return self.path / "usage.json"

    @property
    def chroma_dir(self) -> Path:
        return self.path / "chroma"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def exists(self) -> bool:
        return self.config_file.is_file()

    # lifecycle --------------------------------------------------------------
    def create(self, config: RunConfig) -> None:
        if self.exists():
            raise InputError(
                f"{self.path} already holds a run; `gpo-ray resume {self.path}` continues it, "
                "or choose another --run-dir"
            )
        try:
            for d in (self.path, self.checkpoints, self.cache_dir, self.logs_dir):
                d.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self.config_file,
                {"fingerprint": config.fingerprint(), "checkpoint_version": CHECKPOINT_VERSION,
                 "config": config.public_dict()},
            )
        except (OSError, ValueError) as e:  # ValueError: a path the OS cannot take (a NUL byte)
            raise InputError(f"cannot create run directory {self.path}: {getattr(e, 'strerror', None) or e}") from None

    def load_config(self) -> RunConfig:
        if not self.exists():
            raise InputError(f"{self.path} holds no gpo-ray run (no config.json)")
        try:
            data = json.loads(self.config_file.read_text(encoding="utf-8"))
            config = RunConfig.model_validate(data["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{self.config_file} is damaged and cannot be resumed: {type(e).__name__}") from None
        if data.get("fingerprint") != config.fingerprint():
            raise InputError(f"{self.config_file} was edited or is damaged (fingerprint mismatch); refusing to mix runs")
        return config

    # checkpoints -------------------------------------------------------------
    def append_step(self, task: str, record: StepResult, *, fingerprint: str) -> None:
        line = json.dumps({"v": CHECKPOINT_VERSION, "fp": fingerprint, "task": task, **record.to_dict()},
                          ensure_ascii=False)
        path = self.checkpoints / task_file_name(task)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise RunFailed(
                f"cannot write checkpoint {path}: {e.strerror or e}; steps before this one are intact, "
                f"`gpo-ray resume {self.path}` continues once the disk is writable"
            ) from None

    def completed_steps(self, task: str, *, fingerprint: str) -> list[StepResult]:
        path = self.checkpoints / task_file_name(task)
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").split("\n")
        torn_tail = lines and lines[-1] != ""  # the final newline is written with the record
        records: dict[int, StepResult] = {}
        for i, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw)
                if d.get("fp") != fingerprint:
                    raise InputError(f"{path}:{i}: checkpoint belongs to a different config; refusing to mix runs")
                if d.get("task") != task:
                    raise ValueError("task name mismatch")
                rec = StepResult.from_dict(d)
            except InputError:
                raise
            except (ValueError, KeyError, TypeError) as e:
                if torn_tail and i == len(lines):
                    self.log.warning("checkpoint_torn_tail_dropped", file=str(path), line=i)
                    continue
                raise InputError(f"{path}:{i}: corrupted checkpoint ({type(e).__name__}); refusing to resume") from None
            records.setdefault(rec.step, rec)
        steps = [records[k] for k in sorted(records)]
        if [r.step for r in steps] != list(range(len(steps))):
            raise InputError(f"{path}: checkpoint steps are not contiguous from 0; refusing to resume")
        return steps

    def write_results(self, data: dict[str, Any] | str) -> None:
        """results.json from its document, or from its text already serialised (the controller's state writer
        serialises its pydantic model, several times faster than json.dumps at a thousand tasks)."""
        self._write_state_file(self.results_file, data)

    def write_usage(self, data: dict[str, Any]) -> None:
        self._write_state_file(self.usage_file, data)

    def _write_state_file(self, path: Path, data: dict[str, Any] | str) -> None:
        try:
            if isinstance(data, str):
                write_text_atomic(path, data)
            else:
                write_json_atomic(path, data)
        except OSError as e:
            raise RunFailed(
                f"cannot write {path}: {e.strerror or e}; completed steps are kept, "
                f"`gpo-ray resume {self.path}` continues once the disk is writable"
            ) from None
