"""tests/parallel_order.py: the shares the parallel workers start with keep each file's slow tests on one worker."""

from __future__ import annotations

from dataclasses import dataclass

from tests.parallel_order import dealt, first_shares


@dataclass
class FakeItem:
    nodeid: str
    markers: tuple[str, ...] = ()

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None


def collection() -> list[FakeItem]:
    items = [FakeItem(f"tests/unit/test_u{f}.py::test_{i}") for f in range(6) for i in range(10)]
    items += [FakeItem(f"tests/integration/test_sweep.py::test_{i}", ("slow", "ray")) for i in range(4)]
    items += [FakeItem(f"tests/integration/test_e2e.py::test_{i}", ("ray",)) for i in range(3)]
    items += [FakeItem(f"tests/faults/test_faults.py::test_{i}", ("ray",)) for i in range(5)]
    return items


def worker_shares(items: list[FakeItem], workers: int) -> list[list[FakeItem]]:
    """What each worker is sent first: worksteal's contiguous blocks of the ordered collection."""
    order, out, at = dealt(items, workers), [], 0
    for size in first_shares(len(items), workers):
        out.append(order[at:at + size])
        at += size
    return out


def test_the_shares_are_the_blocks_worksteal_sends():
    assert first_shares(10, 4) == [2, 2, 3, 3] and sum(first_shares(1551, 4)) == 1551


def test_each_file_with_ray_or_slow_tests_is_on_one_worker_and_starts_its_share():
    items = collection()
    shares = worker_shares(items, 4)
    assert sorted(i.nodeid for s in shares for i in s) == sorted(i.nodeid for i in items)  # every test, once
    for name in ("test_sweep.py", "test_e2e.py", "test_faults.py"):
        holding = [n for n, share in enumerate(shares) if any(name in i.nodeid for i in share)]
        assert len(holding) == 1, (name, holding)
    for share in shares:  # the costly tests first, then the quick ones that idle workers steal
        costs = [1 if not i.markers else 10 for i in share]
        assert costs == sorted(costs, reverse=True)
    # The three costly files go to three different workers (the costliest, test_sweep, alone).
    assert len({n for n, share in enumerate(shares) for i in share if i.markers}) == 3
