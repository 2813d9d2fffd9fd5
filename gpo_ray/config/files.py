"""Reading a run config: a YAML or TOML file (or a shipped example, `example:NAME`), its relative paths anchored to
its folder, CLI flags merged over it, validated once; a problem becomes one ConfigError line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpo_ray.config.presets import deep_merge
from gpo_ray.config.schema import RunConfig
from gpo_ray.errors import ConfigError, error_line
from gpo_ray.examples import CONFIG_PREFIX, example_config


def read_config_file(path: Path) -> dict[str, Any]:
    """Read YAML or TOML into a dict; a broken file becomes a ConfigError naming it. `example:NAME` is a shipped
    example's config (gpo_ray/examples/)."""
    if str(path).startswith(CONFIG_PREFIX) and not path.exists():
        path = example_config(str(path))
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: {error_line(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(data).__name__}")
    return anchor_paths(data, folder=path.parent, source=path)


def anchor_paths(data: dict[str, Any], *, folder: Path, source: Path) -> dict[str, Any]:
    """Relative paths in a config read from a file are relative to that file's folder (run_dir stays relative to
    where you run). Changes `data` in place and returns it; `source` names the file in errors."""
    def anchored(value: Any, field: str) -> Any:
        if not isinstance(value, str) or Path(value).is_absolute():
            return value
        if "\x00" in value:
            raise ConfigError(f"{source}: {field}: a path must not contain a NUL byte")
        return str((folder / value).resolve())

    if "data_dir" in data:
        data["data_dir"] = anchored(data["data_dir"], "data_dir")
    sources = data.get("task_sources")
    if isinstance(sources, list):
        for i, src in enumerate(sources):
            if isinstance(src, dict) and "path" in src:
                src["path"] = anchored(src["path"], f"task_sources.{i}.path")
            metric = src.get("metric") if isinstance(src, dict) else None
            if isinstance(metric, dict) and metric.get("kind") == "python" and isinstance(metric.get("function"), str):
                file, sep, name = metric["function"].rpartition(":")
                if sep and file.endswith(".py"):  # a metric file beside the config
                    metric["function"] = f"{anchored(file, f'task_sources.{i}.metric.function')}:{name}"
    return data




def format_validation_error(e: ValidationError) -> str:
    """One line: the first failing field and its problem (and how many more there are)."""
    errs = e.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]).encode("unicode_escape").decode("ascii") or "config"
    msg = first["msg"]
    msg = msg.removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return f"invalid config: {loc}: {msg}{more}"


def load_config(path: Path | None = None, *, overrides: dict[str, Any] | None = None) -> RunConfig:
    """File (optional) + CLI overrides -> validated RunConfig, or ConfigError."""
    data = read_config_file(path) if path is not None else {}
    data = deep_merge(data, overrides or {})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
