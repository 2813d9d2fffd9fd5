"""A sweep's grid: a base run config, named variants of it (or the cross product of a few axes), and seeds.

A grid file (YAML or TOML):

    base: {...}              # a run config, the schema of `gpo-ray optimize`'s file (may use `preset`), or the
                             # path of such a file, relative to the grid file
    variants:                # name -> overrides of the base (nested, or dotted keys)
      generate: {}
      edit: {optimizer.update: edit}
    # or, instead of variants: every combination of the values, named from them ("update=edit+retrieval=recency")
    axes:
      optimizer.update: [generate, edit]
      optimizer.schedule: {cosine: {kind: cosine}, fixed: {kind: fixed}}   # a mapping names its values
    seeds: [0, 1]            # optimizer.seed of each sub-run (default: the base's seed)

Every sub-run's full config is validated here, once, and a bad one is a one-line error naming its variant. The
sub-runs share one set of actors, so the settings that shape those (the endpoints of both roles, the cluster, the
embedder, the cache) and the tasks are the grid's, not a variant's.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gpo_ray.config import (
    RunConfig,
    anchor_paths,
    deep_merge,
    format_validation_error,
    judge_metrics,
    read_config_file,
)
from gpo_ray.errors import ConfigError
from gpo_ray.vocabulary import ConfigRole

GRID_KEYS = ("base", "variants", "axes", "seeds")
# Shared by every sub-run (the actors and the grid's columns): a variant must not set them.
SHARED_KEYS = ("tasks", "data_dir", "task_sources", "cluster", "embedder", "cache", "tracking", "run_dir")
# Of the two LLM roles, only how a request is sampled may differ between variants: the rest is the actors' clients.
PER_REQUEST_ROLE_FIELDS = ("temperature", "max_tokens")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]{0,79}")
SEED_SEPARATOR = "--seed"


@dataclass(frozen=True)
class SubRun:
    """One (variant, seed) of a sweep: a normal run directory under SWEEP_DIR/runs/<name>."""

    name: str  # "<variant>--seed<k>"
    variant: str
    seed: int
    config: RunConfig


@dataclass(frozen=True)
class Grid:
    """The grid as given (after the CLI's flags): its base config, each variant's overrides, the seeds."""

    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    seeds: tuple[int, ...]

    def sub_runs(self, sweep_dir: Path) -> list[SubRun]:
        """Every (variant, seed) with its validated config, its run directory under `sweep_dir`/runs."""
        runs = []
        for variant, overrides in self.variants.items():
            for seed in self.seeds:
                name = sub_run_name(variant, seed)
                data = deep_merge(deep_merge(self.base, overrides),
                                  {"optimizer": {"seed": seed}, "run_dir": str(Path(sweep_dir) / "runs" / name)})
                try:
                    config = RunConfig.model_validate(data)
                except ValidationError as e:
                    raise ConfigError(f"variant {variant!r}: {format_validation_error(e)}") from None
                runs.append(SubRun(name=name, variant=variant, seed=seed, config=config))
        check_shared(runs)
        return runs

    def public_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({"base": self.base, "variants": self.variants, "seeds": list(self.seeds)},
                                     default=str))


def sub_run_name(variant: str, seed: int) -> str:
    return f"{variant}{SEED_SEPARATOR}{seed}"


def is_grid_file(data: dict[str, Any]) -> bool:
    """A grid, not a run config: it has a base, variants or axes (a run config has none of these keys)."""
    return any(k in data for k in ("base", "variants", "axes"))


def load_grid(path: Path, *, overrides: dict[str, Any] | None = None, seed: int | None = None) -> Grid:
    """Read a grid file; `overrides` (the CLI's flags) are merged over its base, `seed` replaces its seeds."""
    data = read_config_file(path)
    return grid_from_dict(data, folder=path.parent, source=path, overrides=overrides, seed=seed)


def grid_from_dict(data: dict[str, Any], *, folder: Path, source: Path | str = "grid",
                   overrides: dict[str, Any] | None = None, seed: int | None = None) -> Grid:
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown grid setting {unknown[0]!r} (a grid has {', '.join(GRID_KEYS)}; "
                          "run settings go under base:)")
    base = data.get("base", {})
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else folder / base
        base = read_config_file(base_path)
    elif isinstance(base, dict):
        base = anchor_paths(json.loads(json.dumps(base, default=str)), folder=folder, source=Path(str(source)))
    else:
        raise ConfigError(f"{source}: base: a run config (mapping) or the path of one, not {type(base).__name__}")
    base = deep_merge(base, overrides or {})
    if "variants" in data and "axes" in data:
        raise ConfigError(f"{source}: give variants or axes, not both")
    if "axes" in data:
        variants = variants_from_axes(data["axes"], source=source)
    else:
        raw = data.get("variants", {"base": {}})
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{source}: variants: a mapping of name -> overrides, with at least one variant")
        variants = {}
        for name, over in raw.items():
            if over is not None and not isinstance(over, dict):
                raise ConfigError(f"{source}: variant {name!r}: overrides must be a mapping, not {type(over).__name__}")
            variants[str(name)] = nested(over or {})
    for name, over in variants.items():
        check_variant(name, over, source=source)
    seeds = _seeds(data.get("seeds"), base=base, seed=seed, source=source)
    return Grid(base=base, variants=variants, seeds=seeds)


def nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys ("optimizer.update": edit) as nested mappings ({"optimizer": {"update": "edit"}})."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        value = nested(value) if isinstance(value, dict) else value
        for part in reversed(parts[1:]):
            value = {part: value}
        out = deep_merge(out, {parts[0]: value}) if isinstance(value, dict) else {**out, parts[0]: value}
    return out


def variants_from_axes(axes: Any, *, source: Path | str) -> dict[str, dict[str, Any]]:
    """The cross product of the axes' values, in the order given; names like "update=edit+retrieval=recency"."""
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{source}: axes: a mapping of dotted.key -> [values] (or {{name: value}})")
    leaves = [str(k).split(".")[-1] for k in axes]
    named_axes: list[list[tuple[str, Any]]] = []
    for key, leaf in zip(axes, leaves):
        label = leaf if leaves.count(leaf) == 1 else str(key)
        values = axes[key]
        if isinstance(values, dict):
            pairs = [(str(n), v) for n, v in values.items()]
        elif isinstance(values, list):
            pairs = [(_value_name(v, key=str(key), source=source), v) for v in values]
        else:
            raise ConfigError(f"{source}: axes: {key}: a list of values or a mapping of name -> value")
        if not pairs:
            raise ConfigError(f"{source}: axes: {key}: no values")
        named_axes.append([(f"{label}={n}", {str(key): v}) for n, v in pairs])
    variants: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*named_axes):
        name = "+".join(n for n, _ in combo)
        over: dict[str, Any] = {}
        for _, dotted in combo:
            over = deep_merge(over, nested(dotted))
        variants[name] = over
    return variants


def _value_name(value: Any, *, key: str, source: Path | str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{source}: axes: {key}: name this value by giving the axis as a mapping {{name: value}}")


def check_variant(name: str, overrides: dict[str, Any], *, source: Path | str) -> None:
    if not NAME_PATTERN.fullmatch(name) or SEED_SEPARATOR in name:
        raise ConfigError(f"{source}: variant name {name!r}: use letters, digits and _ . = + - (at most 80, not "
                          f"'{SEED_SEPARATOR}'), it names a folder")
    for key in SHARED_KEYS:
        if key in overrides:
            raise ConfigError(f"{source}: variant {name!r}: {key} is shared by every variant of a sweep; set it in base")
    if "seed" in overrides.get("optimizer", {}):
        raise ConfigError(f"{source}: variant {name!r}: optimizer.seed comes from the grid's seeds")


def _seeds(raw: Any, *, base: dict[str, Any], seed: int | None, source: Path | str) -> tuple[int, ...]:
    if seed is not None:
        return (seed,)
    if raw is None:
        return (int((base.get("optimizer") or {}).get("seed", 0)),)
    if not isinstance(raw, list) or not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise ConfigError(f"{source}: seeds: a list of integers, e.g. [0, 1]")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"{source}: seeds: each seed once")
    return tuple(raw)


def role_connection(config: RunConfig, role: str) -> dict[str, Any]:
    """What the shared actors' clients of a role are built from: all but how each request is sampled."""
    r = getattr(config, role)
    d = r.model_dump(mode="json")
    for f in PER_REQUEST_ROLE_FIELDS:
        d.pop(f, None)
    d["structured_output"] = r.uses_structured_output
    return d


def check_shared(runs: list[SubRun]) -> None:
    """Every sub-run must be servable by the same actors: same roles' endpoints and clients, same shared settings."""
    first = runs[0]
    for run in runs[1:]:
        for role in (ConfigRole.TASK_MODEL, ConfigRole.OPTIMIZER_MODEL):
            a, b = role_connection(first.config, role), role_connection(run.config, role)
            if a != b:
                field = next(k for k in a if a.get(k) != b.get(k))
                raise ConfigError(
                    f"variant {run.variant!r}: {role}.{field} differs from variant {first.variant!r}'s; the variants "
                    f"of a sweep share one pool of {role} clients (only temperature and max_tokens may differ)")
        if judge_metrics(first.config) and first.config.judge_model != run.config.judge_model:
            # The judge is asked in the shared evaluators, with the first variant's client and sampling.
            raise ConfigError(f"variant {run.variant!r}: judge_model differs from variant {first.variant!r}'s; the "
                              "variants of a sweep share one judge")
        for key in SHARED_KEYS:
            if key != "run_dir" and getattr(first.config, key) != getattr(run.config, key):
                raise ConfigError(f"variant {run.variant!r}: {key} differs from variant {first.variant!r}'s; it is "
                                  "shared by every variant of a sweep")
