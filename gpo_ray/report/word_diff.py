"""Word-level diff of two prompts: what a reader needs to see of a GPO update (words, as the edit budget counts)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

DiffOp = Literal["equal", "delete", "insert"]


@dataclass(frozen=True)
class DiffPiece:
    op: DiffOp
    text: str  # the piece's words joined by single spaces


def word_diff(old: str, new: str) -> list[DiffPiece]:
    """old -> new as equal / delete / insert runs of whitespace-split words; a replacement is a delete then an
    insert. Joining the equal and delete pieces gives old's words back, equal and insert pieces new's."""
    a, b = old.split(), new.split()
    pieces: list[DiffPiece] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces.append(DiffPiece("equal", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(DiffPiece("delete", " ".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(DiffPiece("insert", " ".join(b[j1:j2])))
    return pieces
