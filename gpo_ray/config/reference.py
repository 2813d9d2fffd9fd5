"""The configuration reference (docs/configuration-reference.md), written from the schema's models themselves.

    .venv/bin/python -m gpo_ray.config.reference > docs/configuration-reference.md

It walks RunConfig and every model nested in it and writes, per section (a model, at the config paths where it
appears), each field's name, type with its bounds, default (with each role's own defaults and what `preset: paper`
lays under your settings) and description: the Field's description, else the comment written just above the field
in schema.py. tests/unit/test_config_reference.py fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from enum import Enum
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gpo_ray.config.presets import PRESETS, ROLE_DEFAULTS, ROLES
from gpo_ray.config.schema import LLMRoleConfig, RunConfig

__all__ = ["COMMAND", "render"]

COMMAND = ".venv/bin/python -m gpo_ray.config.reference > docs/configuration-reference.md"

_HEADER = f"""# Configuration reference

Every setting of a run config (a YAML or TOML file, `gpo-ray optimize CONFIG`; or `gpo_ray.RunConfig` in Python),
section by section, as the pydantic models in `gpo_ray/config/schema.py` define them. Generated: do not edit by hand;
after a change to the models run

    {COMMAND}

(`tests/unit/test_config_reference.py` fails while this file is stale). What the settings do, with examples:
[configuration.md](configuration.md), [task-sources.md](task-sources.md), [metrics.md](metrics.md),
[paper-preset.md](paper-preset.md), [variants.md](variants.md).

A section's path says where it goes in the file: `optimizer.schedule` is the mapping `schedule:` inside
`optimizer:`; `task_sources[]` is each item of the list `task_sources:`. "required" means the field has no
default. `null` in YAML is `None`. In a role's block (`task_model`, `optimizer_model`, `judge_model`) each role
starts from its own sampling defaults, shown beside the model's own; "paper:" is what `preset: paper` sets under
your own settings (a key you give still wins).
"""


def _slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _title(cls: type[BaseModel], paths: list[str]) -> str:
    return f"{', '.join(paths)}: {cls.__name__}"


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The models an annotation names, in the order it names them."""
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        for m in _models_in(arg):
            if m not in out:
                out.append(m)
    return out


def _is_list(tp: Any) -> bool:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) in (list, tuple)


def _type(tp: Any, anchors: dict[type, str]) -> str:
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type(a, anchors) for a in args)
    if origin is list:
        return f"list of {_type(args[0], anchors)}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type(args[0], anchors)}"
        return "[" + ", ".join(_type(a, anchors) for a in args) + "]"
    if origin is dict:
        return f"mapping of {_type(args[0], anchors)} to {_type(args[1], anchors)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{anchors[tp]})" if tp in anchors else tp.__name__
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    if tp is Any:
        return "any"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp)


def _bounds(info: FieldInfo) -> str:
    words = []
    for m in info.metadata:
        for kind, attr, sign in ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
                                 (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<=")):
            if isinstance(m, kind):
                words.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            words.append(f"at least {m.min_length} long")
        if isinstance(m, annotated_types.MaxLen):
            words.append(f"at most {m.max_length} long")
    return ", ".join(words)


def _plain(v: Any) -> str:
    """A value as it would be written in a YAML file."""
    if v is None:
        return "null"
    if isinstance(v, Enum):
        return str(v.value)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_plain(k)}: {_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    if isinstance(v, str) and (v == "" or v != v.strip() or any(c in v for c in ":#'{}[],")):
        return '"' + v.replace('"', '\\"') + '"'
    return str(v)


def _value(v: Any) -> str:
    if isinstance(v, BaseModel):
        return "the section's defaults"
    return "`" + _plain(v).replace("|", "\\|") + "`"


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return _value(info.default_factory())  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "required"
    return _value(info.default)


def _comments(cls: type[BaseModel]) -> dict[str, str]:
    """The comment lines written just above each field in the class's source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = re.match(r"\s+(\w+):", line)
        if not m or m.group(1) not in cls.model_fields:
            continue
        above: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            above.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        if above:
            out[m.group(1)] = " ".join(above)
    return out


def _doc(cls: type[BaseModel]) -> str:
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split())


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "metric_variants":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


# Where the prose explains a section's settings (pages under docs/); a section without an entry has none.
_EXPLAINED_IN: dict[str, tuple[str, ...]] = {
    "RunConfig": ("configuration.md",),
    "TaskSource": ("task-sources.md",),
    "LLMRoleConfig": ("configuration.md", "failure-behaviour.md"),
    "OptimizerSettings": ("how-gpo-runs.md", "paper-preset.md", "variants.md"),
    "ClusterSettings": ("configuration.md", "../deploy/README.md"),
    "BudgetSettings": ("configuration.md", "metrics.md"),
    "TrackingSettings": ("observability.md",),
    "PythonMetric": ("metrics.md",),
    "ChecksMetric": ("metrics.md",),
    "JudgeMetric": ("metrics.md",),
    "HedgeSettings": ("failure-behaviour.md",),
    "AdaptiveConcurrencySettings": ("failure-behaviour.md",),
    "ScheduleConfig": ("how-gpo-runs.md",),
    "AdaptiveEvaluationSettings": ("how-gpo-runs.md",),
    "MomentumSettings": ("variants.md",),
}


def _sections() -> list[tuple[type[BaseModel], list[str]]]:
    """Every model under RunConfig, in the order a reader meets them (each field's models before the next field's
    nested ones: breadth first), with every config path where it appears."""
    order: list[type[BaseModel]] = [RunConfig]
    paths: dict[type[BaseModel], list[str]] = {RunConfig: ["(top level)"]}
    queue: list[tuple[type[BaseModel], str]] = [(RunConfig, "")]
    while queue:
        cls, at = queue.pop(0)
        for name, info in cls.model_fields.items():
            path = f"{at}{info.alias or name}" + ("[]" if _is_list(info.annotation) else "")
            for model in _models_in(info.annotation):
                if model not in paths:
                    order.append(model)
                    paths[model] = []
                if path not in paths[model]:
                    paths[model].append(path)
                    queue.append((model, path + "."))
    return [(m, paths[m]) for m in order]


def render() -> str:
    sections = _sections()
    anchors = {cls: _slug(_title(cls, paths)) for cls, paths in sections}
    preset = _flat(PRESETS["paper"])
    out = [_HEADER, "## Sections", ""]
    out += [f"- [{_title(cls, paths)}](#{anchors[cls]})" for cls, paths in sections]
    for cls, paths in sections:
        out += ["", f"## {_title(cls, paths)}", ""]
        if _doc(cls):
            out += [_doc(cls), ""]
        if pages := _EXPLAINED_IN.get(cls.__name__):
            out += ["Explained in " + ", ".join(f"[{page.removeprefix('../')}]({page})" for page in pages) + ".", ""]
        comments = _comments(cls)
        out += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
        for name, info in cls.model_fields.items():
            key = info.alias or name
            kind = _type(info.annotation, anchors)
            if bounds := _bounds(info):
                kind += f"; {bounds}"
            default = _default(info)
            extra = []
            for path in paths:
                parts = []
                if cls is LLMRoleConfig and path in ROLES and key in ROLE_DEFAULTS[path]:
                    parts.append(_value(ROLE_DEFAULTS[path][key]))
                dotted = f"{path}.{key}" if path != "(top level)" else key
                if dotted in preset:
                    parts.append(f"paper: {_value(preset[dotted])}")
                if parts:
                    extra.append(f"{path}: {', '.join(parts)}" if cls is LLMRoleConfig else ", ".join(parts))
            if extra:
                default += "; " + "; ".join(extra)
            text = info.description or comments.get(name, "")
            text = " ".join(text.split()).replace("|", "\\|")
            out.append(f"| `{key}` | {kind} | {default} | {text} |")
    return "\n".join(out) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
