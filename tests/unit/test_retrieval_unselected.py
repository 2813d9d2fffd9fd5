"""A retrieval that does not select (at most k trajectory entries) is answered in the driver exactly as the trajectory
memory answers it: same entries, same order, for every strategy and order (core/retrieval.py `retrieve_unselected`,
against TrajectoryStore.retrieve on a real embedded Chroma with a fake embedder)."""

from __future__ import annotations


import pytest

from gpo_ray.controller.services import memory_records
from gpo_ray.core.results import StepResult
from gpo_ray.core.retrieval import ORDERS, STRATEGIES, retrieve_unselected, selects
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry

from tests.unit.test_memory_store import chroma_path, open_store  # noqa: F401 - chroma_path is a fixture

# Ties on purpose (0.5 three times, 0.25 twice): the tie-breaks are where an order could differ.
SCORES = [0.5, 0.25, 0.5, 0.75, 0.25, 0.5]
PROMPTS = ["Solve it.", "Think step by step and solve it.", "Track every move.", "Answer with a number.",
           "Check the units first.", "Solve it carefully."]


def steps(n: int) -> list[StepResult]:
    """A task's first n steps as the run records them (step 0: the initial prompt), each with one candidate."""
    return [StepResult(step=t, edit_budget=10, prompt=PROMPTS[t], eval_score=SCORES[t],
                       candidates=() if t == 0 else (ScoredCandidate(prompt=PROMPTS[t], score=SCORES[t],
                                                                     edit_distance=2),))
            for t in range(n)]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_a_retrieval_that_does_not_select_equals_the_memory_s_for_every_strategy_and_order(
        chroma_path, k):  # noqa: F811 - the fixture
    store = open_store(chroma_path)
    compared = 0
    for n in range(1, k + 2):
        task = f"task-{n}"
        records, parent = [], ""
        for r in steps(n):
            records += memory_records(task, r, parent=parent)
            parent = r.prompt
        store.add(records)
        trajectory = [TrajectoryEntry(r.prompt, r.eval_score, r.step) for r in steps(n)]
        for strategy in STRATEGIES:
            for order in ORDERS:
                here = retrieve_unselected(trajectory, strategy=strategy, k=k, order=order)
                if n > k:
                    assert here is None, "more than k entries: the memory selects"
                    continue
                if strategy == "relevance" and order == "as_selected" and n > 2:
                    assert here is None, "relevance as selected orders the older entries by similarity"
                    continue
                assert here == store.retrieve(task, strategy=strategy, k=k, order=order), (n, strategy, order)
                assert len(here) == n
                compared += 1
    assert compared > 0


def test_selects_says_when_the_memory_is_needed():
    assert not selects(3, strategy="relevance", k=3, order="score_ascending")
    assert selects(4, strategy="recency", k=3, order="score_ascending")
    assert not selects(2, strategy="relevance", k=3, order="as_selected")
    assert selects(3, strategy="relevance", k=3, order="as_selected")
    assert not selects(3, strategy="importance", k=3, order="as_selected")
