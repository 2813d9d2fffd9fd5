"""Which training examples a step scores its candidates on: deterministic per (seed, epoch)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, identical in every process (unlike hash())."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def steps_per_epoch(train_size: int, *, batch_size: int) -> int:
    """floor(train / batch), plus one when the remainder is at least half a batch (the paper's count)."""
    full, rest = divmod(train_size, batch_size)
    n = full + (1 if rest and rest * 2 >= batch_size else 0)
    return max(n, 1) if train_size > 0 else 0


def batch_for_step(train: Sequence[T], step: int, *, batch_size: int, seed: int) -> tuple[T, ...]:
    """The training batch of step t (1-based): epochs reshuffle the training set with their own seed."""
    per_epoch = steps_per_epoch(len(train), batch_size=batch_size)
    if per_epoch == 0:
        return ()
    epoch, index = divmod(step - 1, per_epoch)
    order = list(range(len(train)))
    random.Random(stable_seed(seed, "epoch", epoch)).shuffle(order)
    picked = order[index * batch_size : (index + 1) * batch_size]
    return tuple(train[i] for i in picked)
