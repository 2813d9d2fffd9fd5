"""The order in which pytest-xdist workers take the tests (scripts/test.sh's second phase: `-n 4 --dist worksteal`).

Under worksteal each worker starts with one contiguous share of the collection, and an idle worker steals from the
end of the longest remaining share. Sorted by cost and dealt like cards, every share starts with its slow tests and
ends with quick unit tests, the ones that get stolen: the slow tests run side by side from the start instead of one
after another at the end. A run without workers keeps the files' order (the embedded model's tests and the multi-node
ones run that way, in phases of their own). Every worker computes the same order (xdist checks that the collections
agree).
"""

from __future__ import annotations

import os

import pytest

# Roughly how long a test takes, by what it needs (its markers, complete once tests/conftest.py has added the
# implied ones).
COST = (("slow", 30), ("ray", 10))


def cost(item: pytest.Item) -> int:
    return next((value for marker, value in COST if item.get_closest_marker(marker) is not None), 1)


def dealt(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    ranked = sorted(items, key=cost, reverse=True)  # stable: files keep their order within one cost
    return [item for share in range(workers) for item in ranked[share::workers]]


@pytest.hookimpl(trylast=True)  # after the markers are complete and `-m` has deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        items[:] = dealt(items, workers)
