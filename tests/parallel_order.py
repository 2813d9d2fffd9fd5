"""The order in which pytest-xdist workers take the tests (scripts/test.sh's second phase: `-n 4 --dist worksteal`).

Under worksteal each worker starts with one contiguous share of the collection, and an idle worker steals from the
end of the longest remaining share. The shares are dealt by file, not by test: a file's tests stay together on one
worker, so a module-scoped fixture (a whole sweep to compare with, a Ray head of its own, a fault harness) is set up
once, not once per worker that happened to get one of its tests. Files go, costliest first, to the share with the
least cost so far (greedy, longest processing time first), and each share runs its costliest files first and ends
with quick unit tests, the ones that get stolen: the slow tests run side by side from the start instead of one after
another at the end. A run without workers keeps the files' order (the embedded model's tests and the multi-node ones
run that way, in phases of their own). Every worker computes the same order (xdist checks that the collections
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


def first_shares(count: int, workers: int) -> list[int]:
    """How many tests each worker gets at the start: worksteal sends each idle worker, in turn, the pending tests
    divided by the workers still to serve (xdist/scheduler/worksteal.py)."""
    sizes, left = [], count
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    return sizes


def dealt(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    heavy = sorted((tests for tests in files.values() if any(cost(t) > 1 for t in tests)),
                   key=lambda tests: sum(map(cost, tests)), reverse=True)  # stable on ties: the files' order
    light = [t for tests in files.values() if all(cost(t) == 1 for t in tests) for t in tests]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for tests in heavy:  # each file whole, to the share with the least cost so far
        least = min(range(workers), key=lambda i: (loads[i], i))
        shares[least].extend(tests)
        loads[least] += sum(map(cost, tests))
    sizes = first_shares(len(items), workers)
    if any(len(share) > size for share, size in zip(shares, sizes, strict=True)):
        return sorted(items, key=cost, reverse=True)  # more slow tests than a share holds: slow ones first, at least
    rest = iter(light)
    for share, size in zip(shares, sizes, strict=True):  # topped up with quick tests, so the shares are xdist's
        share.extend(next(rest) for _ in range(size - len(share)))
    return [item for share in shares for item in share]


@pytest.hookimpl(trylast=True)  # after the markers are complete and `-m` has deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        items[:] = dealt(items, workers)
