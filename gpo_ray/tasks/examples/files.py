"""Writing an example task's folder in the layout the loader reads (shared by the example generators)."""

from __future__ import annotations

import json
from pathlib import Path


def write_task_files(task_dir: Path, splits: dict[str, list[dict[str, str]]], *, metric: str,
                     description: str) -> list[Path]:
    """One example task's folder as the loader reads it: a jsonl file per split and meta.json; the files written."""
    task_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, records in splits.items():
        path = task_dir / f"{split}.jsonl"
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.write_text(lines, encoding="utf-8", newline="\n")
        written.append(path)
    meta = task_dir / "meta.json"
    meta.write_text(
        json.dumps({"metric": metric, "description": description}, indent=2) + "\n", encoding="utf-8", newline="\n"
    )
    written.append(meta)
    return written
