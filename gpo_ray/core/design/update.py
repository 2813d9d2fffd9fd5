"""The update-method axis (optimizer.update): ask for a new prompt (`generate`, the official generate_without) or
for the current one modified (`edit`, edit_without). Each style words both (design/style.py); this names which."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UpdateMethod:
    name: str  # "generate" | "edit": the meta-prompt's wording, passed to the style's renderer
