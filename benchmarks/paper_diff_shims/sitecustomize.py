"""Loaded at the official code's start-up (this folder is first on its PYTHONPATH): with --align, the format
exemplar draw returns gpo-ray's indices. The shims of the other modules are plain modules beside this file."""

from __future__ import annotations

import json
import os


def _align_format_draw() -> None:
    path = os.environ.get("GPO_DIFF_SHIM_CONFIG")
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        indices = json.load(f).get("format_indices")
    if indices is None:
        return
    import numpy as np

    original = np.random.choice

    def choice(a, size=None, replace=True, p=None):
        drawn = original(a, size=size, replace=replace, p=p)  # the RNG advances as it would
        # The split permutations draw all of range(n); the exemplar draw is the one that draws fewer.
        if isinstance(a, int) and not replace and size is not None and size == len(indices) and size < a:
            print(f"[paper_diff] format exemplars: {sorted(int(i) for i in drawn)} -> aligned {indices}", flush=True)
            return np.array(indices)
        return drawn

    np.random.choice = choice


_align_format_draw()
