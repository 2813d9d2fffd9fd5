"""Writing a rendered report or export: whole or not at all (temp file + rename), errors as one InputError line."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gpo_ray.errors import InputError


def write_text_file(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file beside it, created with the user's umask (as any file they
    write; mkstemp's 0600 would hide a report from the people it is for)."""
    if path.is_dir():
        raise InputError(f"--output {path} is a directory; give a file path")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None
