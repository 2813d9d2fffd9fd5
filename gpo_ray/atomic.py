"""Files written whole or not at all: a temp file beside the target, fsynced, then renamed over it, so a reader (or
a resume after a kill) never sees half a file. The run directory and the memory's layout record write this way."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented JSON (non-ASCII kept), written atomically. OSError on failure, with the temp file removed."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file. OSError on failure,
    with the temp file removed. The file is private to its owner (mkstemp's mode 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
