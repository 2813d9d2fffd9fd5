"""The best prompt per task, in a shape an application loads.

`gpo-ray export RUN_DIR` writes (JSON by default, or the same as YAML)::

    {
      "format": "gpo-ray/best-prompts",
      "version": 1,
      "run": {"fingerprint": "3f9c0a1b2c3d4e5f", "status": "completed"},
      "prompts": {
        "bbh/navigate": {
          "prompt": "Let's think step by step ...",   # the prompt to use
          "placement": "end",            # where it goes: after the question (end), before it (beginning),
                                         # or as the system message (system), as during optimization
          "eval_score": 0.82,            # its score on the eval split, in [0, 1]
          "test_score": 0.79,            # on the test split; null until the task has finished
          "step": 3,                     # the step that found it (0 = the initial prompt)
          "status": "completed"          # completed | budget_exhausted | running | stopped
        }
      }
    }

A task still in progress exports its best prompt so far. `load_best_prompts(path)` returns {task: prompt}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml

from gpo_ray.errors import InputError
from gpo_ray.report.run_view import RunView, read_run

EXPORT_FORMAT = "gpo-ray/best-prompts"
EXPORT_VERSION = 1
ExportFormat = Literal["json", "yaml"]


def best_prompts_document(run: RunView) -> dict[str, Any]:
    """The export document (see the module docstring) of a run; tasks without a completed step are left out."""
    prompts: dict[str, Any] = {}
    for name, task in run.tasks.items():
        best = task.best
        if best is None:
            continue
        prompts[name] = {
            "prompt": best.prompt,
            "placement": run.placement_of(name),
            "eval_score": best.eval_score,
            "test_score": task.best_test_score,
            "step": best.step,
            "status": task.status,
        }
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "run": {"fingerprint": run.fingerprint, "status": run.status}, "prompts": prompts}


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line prompts as literal blocks (PyYAML falls back to quoting when a block could not round-trip)."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_ReadableDumper.add_representer(str, _str_representer)


def dump_best_prompts(document: dict[str, Any], *, format: ExportFormat = "json") -> str:
    if format == "yaml":
        return yaml.dump(document, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=100)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_best_prompts_document(path: Path | str) -> dict[str, Any]:
    """An export file (JSON or YAML), or a run directory read directly. InputError if it is neither."""
    path = Path(path)
    if path.is_dir():
        return best_prompts_document(read_run(path, resolve_data=False))
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML 1.1 reads JSON too
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not JSON or YAML: {type(e).__name__}") from None
    if not (isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT and isinstance(doc.get("prompts"), dict)):
        raise InputError(f"{path} is not a gpo-ray best-prompts export (made by `gpo-ray export RUN_DIR`)")
    if doc.get("version") != EXPORT_VERSION:
        raise InputError(f"{path}: export version {doc.get('version')!r} is not supported (expected {EXPORT_VERSION})")
    for name, entry in doc["prompts"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("prompt"), str)):
            raise InputError(f"{path}: task {name!r} has no prompt")
    return doc


def load_best_prompts(path: Path | str) -> dict[str, str]:
    """{task name: best prompt} from an export file or a run directory."""
    return {name: entry["prompt"] for name, entry in load_best_prompts_document(path)["prompts"].items()}
