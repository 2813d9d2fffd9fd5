"""Adaptive evaluation: successive halving of a step's candidates over growing prefixes of the eval split.

The paper scores every candidate on the whole eval split. Most candidates lose clearly after a few
examples, so round r scores the surviving candidates on the next examples up to
`first_round * eta**r` (of a per-step shuffled order), then keeps the best ceil(alive / eta). Examples
scored in earlier rounds are never scored again. When one candidate is left, or the prefix reaches the
whole split, the survivors are scored on the full split, so the prompt the loop moves to always has a
full eval score. With `first_round >= len(split)` this is exactly full evaluation, the same code path.

Successive halving (Jamieson & Talwalkar, 2016) rather than a confidence bound: it needs no variance
estimate (scores are 0/1 accuracies on a handful of examples, where bounds are loose) and its cost is
known before it starts: about n * first_round * (1 + 1/eta*eta + ...) plus one full evaluation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpo_ray.core.batches import stable_seed
from gpo_ray.core.evaluation import mean

# score(candidate indices, start, stop) -> per candidate (in the given order), per example of order[start:stop]
RangeScorer = Callable[[Sequence[int], int, int], Awaitable[list[list[float]]]]


@dataclass
class HalvingOutcome:
    """Per candidate, the per-example scores it got (a prefix of the shuffled order); the calls made."""

    per_example: list[list[float]]
    rounds: list[tuple[int, int]] = field(default_factory=list)  # (prefix length, candidates scored)
    calls: int = 0
    full_calls: int = 0  # what scoring every candidate on the whole split costs

    def fully_scored(self, n_examples: int) -> list[int]:
        return [i for i, s in enumerate(self.per_example) if len(s) == n_examples]

    @property
    def calls_saved(self) -> int:
        return self.full_calls - self.calls


def eval_order(n_examples: int, *, seed: int, step: int) -> list[int]:
    """The order a step's rounds walk the eval split in: shuffled per step, the same in every process."""
    order = list(range(n_examples))
    random.Random(stable_seed(seed, "adaptive-eval", step)).shuffle(order)
    return order


def round_sizes(n_examples: int, *, first_round: int, eta: int) -> list[int]:
    """Prefix lengths of the rounds: first_round, first_round*eta, ... capped by (and ending at) n_examples."""
    sizes: list[int] = []
    size = first_round
    while size < n_examples:
        sizes.append(size)
        size *= eta
    sizes.append(n_examples)
    return sizes


def halving_calls(n_candidates: int, n_examples: int, *, first_round: int, eta: int) -> int:
    """The calls successive_halving makes: fixed by the sizes alone, whatever the scores (for `gpo-ray plan`)."""
    calls = done = 0
    alive = n_candidates
    if alive == 0:
        return 0
    for size in round_sizes(n_examples, first_round=first_round, eta=eta):
        if alive == 1:
            size = n_examples
        calls += alive * (size - done)
        done = size
        if done >= n_examples:
            break
        alive = max(1, math.ceil(alive / eta))
    return calls


async def successive_halving(
    n_candidates: int,
    n_examples: int,
    score: RangeScorer,
    *,
    first_round: int,
    eta: int,
    tiebreak: Sequence[Any] | None = None,
) -> HalvingOutcome:
    """Score candidates in rounds and drop the worst (see module docstring).

    Ranking within a round: higher mean, then `tiebreak[i]` ascending (the caller passes what its final choice
    prefers on ties, e.g. (edit distance, prompt)), then index.
    """
    if eta < 2:
        raise ValueError("eta must be at least 2")
    if first_round < 1:
        raise ValueError("first_round must be at least 1")
    keys = list(tiebreak) if tiebreak is not None else [0] * n_candidates
    outcome = HalvingOutcome(per_example=[[] for _ in range(n_candidates)], full_calls=n_candidates * n_examples)
    if n_candidates == 0 or n_examples == 0:
        return outcome
    alive = list(range(n_candidates))
    done = 0  # examples scored by every alive candidate
    for size in round_sizes(n_examples, first_round=first_round, eta=eta):
        if len(alive) == 1:
            size = n_examples  # a lone survivor goes straight to the full split
        results = await score(alive, done, size)
        for i, scores in zip(alive, results, strict=True):
            outcome.per_example[i].extend(scores)
        outcome.calls += len(alive) * (size - done)
        outcome.rounds.append((size, len(alive)))
        done = size
        if done >= n_examples:
            break
        keep = max(1, math.ceil(len(alive) / eta))
        alive = sorted(alive, key=lambda i: (-mean(outcome.per_example[i]), keys[i], i))[:keep]
    return outcome
