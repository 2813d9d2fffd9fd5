"""The official GPO code's draws, made the same way: which format exemplars and which training batch.

`optimize.py` seeds numpy's legacy global RNG once (`np.random.seed(0)`) and then, for each task of the run in
order, draws its train, eval and test samples (`random_sampling`: `np.random.choice(n, n * ratio,
replace=False)`, ratio 1 for every dataset, so a full permutation each) and then the format exemplars
(`np.random.choice(len(format), format_data_num, replace=False)`, sorted). Legacy `choice` without replacement is
`permutation(n)[:k]`, so `numpy.random.RandomState` makes the same draws in the same order.

A training batch of the official loop is a slice of the sorted train sample, i.e. of the file order:
`train[i_step * batch : (i_step + 1) * batch]`, the same slices every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from gpo_ray.core.batches import steps_per_epoch

T = TypeVar("T")


def official_format_indices(
    split_sizes: Sequence[tuple[int, int, int, int]], k: int, *, seed: int = 0
) -> list[list[int]]:
    """Per task, the sorted format-exemplar indices the official loop draws for a run over these tasks in this
    order; each entry of `split_sizes` is (train, eval, test, format) sizes. One task alone: `[(48, 48, 144, 5)]`."""
    rng = np.random.RandomState(seed)
    out: list[list[int]] = []
    for train, eval_, test, fmt in split_sizes:
        for n in (train, eval_, test):
            rng.choice(n, size=n, replace=False)  # random_sampling with ratio 1
        if k > fmt:
            raise ValueError(f"cannot draw {k} format exemplars from {fmt}")
        out.append(sorted(int(i) for i in rng.choice(fmt, size=k, replace=False)))
    return out


def official_train_batch(train: Sequence[T], step: int, *, batch_size: int) -> tuple[T, ...]:
    """The training batch of step t (1-based) as the official loop slices it: file order, the same every epoch."""
    per_epoch = steps_per_epoch(len(train), batch_size=batch_size)
    if per_epoch == 0:
        return ()
    i_step = (step - 1) % per_epoch
    return tuple(train[i_step * batch_size : min(len(train), (i_step + 1) * batch_size)])
