"""Which past prompts the optimizer sees: GPO's update direction.

The trajectory is given in step order (initial prompt first). Three strategies, as in the paper:

- recency: the last k prompts;
- importance: the k best-scoring prompts (ties: the newer one);
- relevance: the newest prompt plus the k-1 older prompts whose embeddings are most similar to it
  (cosine; ties: the newer one), so the optimizer sees the neighbourhood of where it stands.

By default (`order="score_ascending"`) the chosen prompts come back ordered by score ascending (ties by step):
best last, as OPRO shows its history. `order="as_selected"` returns them as the official GPO selection methods
(RUCAIBox/GPO, first_order_momentum/selection_methods/) return them, with their tie-breaking: recency newest first;
importance best first (ties: the older first, Python's stable sort); relevance the newest first, then the older ones
by similarity (ties: the older first, as numpy's reversed argsort gives them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpo_ray.core.types import TrajectoryEntry

STRATEGIES: tuple[str, ...] = ("relevance", "recency", "importance")
ORDERS: tuple[str, ...] = ("score_ascending", "as_selected")
DEFAULT_ORDER = ORDERS[0]  # the config's default too (optimizer.retrieval_order)


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of the angle between a and b; 0.0 when either is the zero vector."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} vs {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0.0:
        return 0.0
    return dot / norm


def retrieve(
    trajectory: Sequence[TrajectoryEntry],
    *,
    strategy: str,
    k: int,
    vectors: Sequence[Sequence[float]] | None = None,
    order: str = DEFAULT_ORDER,
) -> list[TrajectoryEntry]:
    """Up to k trajectory entries chosen by `strategy`, ordered by score ascending (ties by step), or as selected."""
    if order not in ORDERS:
        raise ValueError(f"retrieval order must be one of {', '.join(ORDERS)}, got {order!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"retrieval strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if strategy == "relevance":
        if vectors is None:
            raise ValueError("relevance retrieval needs one embedding vector per trajectory entry")
        if len(vectors) != len(trajectory):
            raise ValueError(f"got {len(vectors)} vectors for {len(trajectory)} trajectory entries")
    if not trajectory:
        return []

    indices = range(len(trajectory))
    if order == "as_selected":
        return [trajectory[i] for i in _as_selected(trajectory, strategy, k, vectors)]
    if strategy == "recency":
        chosen = list(indices)[-k:]
    elif strategy == "importance":
        chosen = sorted(indices, key=lambda i: (-trajectory[i].score, -i))[:k]
    else:
        assert vectors is not None
        newest = len(trajectory) - 1
        similarity = {i: cosine_similarity(vectors[newest], vectors[i]) for i in range(newest)}
        older = sorted(similarity, key=lambda i: (-similarity[i], -i))[: k - 1]
        chosen = [newest, *older]
    return sorted((trajectory[i] for i in chosen), key=lambda e: (e.score, e.step))


def selects(length: int, *, strategy: str, k: int, order: str) -> bool:
    """Whether retrieving from a trajectory of `length` entries chooses among them or orders them by similarity.

    With at most k entries every strategy returns all of them; the order then follows from scores and steps alone,
    except relevance as selected, which puts the older entries in order of similarity once there are two of them.
    When it does not select, the driver answers from the task's own trajectory without the trajectory memory (a
    warm start's first steps run before the memory actor exists).
    """
    return length > k or (strategy == "relevance" and order == "as_selected" and length > 2)


def retrieve_unselected(
    trajectory: Sequence[TrajectoryEntry], *, strategy: str, k: int, order: str = DEFAULT_ORDER
) -> list[TrajectoryEntry] | None:
    """What `retrieve` gives when it does not select (`selects`), without vectors; None when it selects."""
    if selects(len(trajectory), strategy=strategy, k=k, order=order):
        return None
    # No similarity then changes the result: any placeholder vectors will do.
    placeholder = [[0.0]] * len(trajectory) if strategy == "relevance" else None
    return retrieve(trajectory, strategy=strategy, k=k, vectors=placeholder, order=order)


def _as_selected(
    trajectory: Sequence[TrajectoryEntry], strategy: str, k: int, vectors: Sequence[Sequence[float]] | None
) -> list[int]:
    """Indices in the official selection methods' order and tie-breaking."""
    n = len(trajectory)
    if strategy == "recency":
        return list(range(n))[-k:][::-1]
    if strategy == "importance":
        return sorted(range(n), key=lambda i: -trajectory[i].score)[:k]  # stable: ties keep step order
    assert vectors is not None
    newest = n - 1
    older = list(range(newest))[::-1]  # newest first, as history_list[:-1][::-1]
    similarity = [cosine_similarity(vectors[newest], vectors[i]) for i in older]
    # np.argsort(similarity)[::-1]: ascending with ties by position, reversed.
    ranked = sorted(range(len(older)), key=lambda j: similarity[j])[::-1][: k - 1]
    return [newest, *(older[j] for j in ranked)]
