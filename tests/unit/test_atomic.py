"""Files written whole or not at all (gpo_ray/atomic.py), as the run directory and the memory layout write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.atomic import write_json_atomic, write_text_atomic


def test_a_file_is_replaced_whole_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old", encoding="utf-8")
    write_json_atomic(path, {"prompt": "Think – step by step", "n": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"prompt": "Think – step by step", "n": 1}
    assert "–" in path.read_text(encoding="utf-8")  # non-ASCII kept, as results.json always had it
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half \udcff")  # a lone surrogate cannot be written as UTF-8
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["usage.json"]


def test_a_missing_folder_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "nowhere" / "memory.json", "{}")
