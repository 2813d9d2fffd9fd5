"""relavance_selection.py uses torch.no_grad() around the embedder only."""

import contextlib


def no_grad():
    return contextlib.nullcontext()
