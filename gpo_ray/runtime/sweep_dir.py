"""A sweep directory: the grid and its sub-runs, one shared response cache and trajectory memory.

    SWEEP_DIR/sweep.json       the grid as given, every sub-run (name, variant, seed, config fingerprint), and the
                               sweep's fingerprint over them: `resume` refuses a sweep whose sub-runs were changed
    SWEEP_DIR/runs/<variant>--seed<k>/   a normal run directory each (`gpo-ray report`, `export`, `resume` read it alone)
    SWEEP_DIR/cache/           the one response cache every sub-run's requests go through
    SWEEP_DIR/chroma/          the one trajectory memory (each sub-run's tasks under its own prefix)
    SWEEP_DIR/logs/driver.jsonl

The sub-runs are created before sweep.json is written: a sweep.json names only sub-runs that exist.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.atomic import write_json_atomic
from gpo_ray.config import RunConfig
from gpo_ray.errors import InputError
from gpo_ray.grid import Grid, SubRun
from gpo_ray.runtime.run_dir import RunDirectory

SWEEP_FILE = "sweep.json"
SWEEP_VERSION = 1


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def sweep_fingerprint(runs: list[tuple[str, str]]) -> str:
    """Over every sub-run's name and config fingerprint."""
    return hashlib.sha256(json.dumps(sorted(runs)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepEntry:
    name: str
    variant: str
    seed: int


class SweepDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def sweep_file(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    @property
    def chroma_dir(self) -> Path:
        return self.path / "chroma"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def run_dir(self, name: str) -> RunDirectory:
        return RunDirectory(self.runs_dir / name)

    def exists(self) -> bool:
        return self.sweep_file.is_file()

    def create(self, grid: Grid, runs: list[SubRun]) -> None:
        if self.exists():
            raise InputError(f"{self.path} already holds a sweep; `gpo-ray resume {self.path}` continues it, "
                             "or choose another --run-dir")
        try:
            for d in (self.path, self.runs_dir, self.cache_dir, self.logs_dir):
                d.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot create sweep directory {self.path}: {getattr(e, 'strerror', None) or e}") \
                from None
        for run in runs:
            self.run_dir(run.name).create(run.config)
        fingerprints = [(r.name, r.config.fingerprint()) for r in runs]
        write_json_atomic(self.sweep_file, {
            "version": SWEEP_VERSION,
            "fingerprint": sweep_fingerprint(fingerprints),
            "grid": grid.public_dict(),
            "runs": [{"name": r.name, "variant": r.variant, "seed": r.seed, "fingerprint": r.config.fingerprint()}
                     for r in runs],
        })

    def read(self) -> dict[str, Any]:
        if not self.exists():
            raise InputError(f"{self.path} holds no gpo-ray sweep (no {SWEEP_FILE})")
        try:
            data = json.loads(self.sweep_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
                raise ValueError("no runs")
            for r in data["runs"]:
                SweepEntry(name=str(r["name"]), variant=str(r["variant"]), seed=int(r["seed"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{self.sweep_file} is damaged: {type(e).__name__}") from None
        return data

    def entries(self) -> list[SweepEntry]:
        return [SweepEntry(name=str(r["name"]), variant=str(r["variant"]), seed=int(r["seed"]))
                for r in self.read()["runs"]]

    def load_sub_runs(self) -> list[SubRun]:
        """Every sub-run with the config it was started with; refuses a sweep whose sub-runs changed."""
        data = self.read()
        runs: list[SubRun] = []
        for r in data["runs"]:
            config: RunConfig = self.run_dir(str(r["name"])).load_config()
            if config.fingerprint() != r.get("fingerprint"):
                raise InputError(f"{self.path / 'runs' / str(r['name'])}: its config is not the one the sweep "
                                 "started with (fingerprint mismatch); refusing to mix runs")
            runs.append(SubRun(name=str(r["name"]), variant=str(r["variant"]), seed=int(r["seed"]), config=config))
        if sweep_fingerprint([(r.name, r.config.fingerprint()) for r in runs]) != data.get("fingerprint"):
            raise InputError(f"{self.sweep_file} was edited or is damaged (fingerprint mismatch); refusing to resume")
        return runs
