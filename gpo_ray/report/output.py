"""Writing a rendered report or export: whole or not at all (temp file + rename), errors as one InputError line."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gpo_ray.errors import InputError


def write_text_file(path: Path, text: str) -> None:
    if path.is_dir():
        raise InputError(f"--output {path} is a directory; give a file path")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None
