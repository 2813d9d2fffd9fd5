"""The edit budget schedule: the paper's formulas, warmup, endpoints and the step count T."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_ray.config import ScheduleConfig
from gpo_ray.core.schedule import EditBudgetSchedule, total_steps

STEP_COUNTS = [1, 2, 7, 18, 100]


def paper_budget(kind: str, initial: int, final: int, warmup: int, T: int, t: int) -> int:
    """The formulas from the brief, written out independently of the implementation."""
    if warmup > 0 and t < warmup:
        return int(initial * t / warmup)
    if kind == "fixed":
        return initial
    done, span = (t - warmup, T - warmup) if T > warmup else (0, 1)
    if kind == "linear":
        return int(initial - (initial - final) * done / span)
    return int(final + (initial - final) * 0.5 * (1 + math.cos(math.pi * done / span)))


@pytest.mark.parametrize("T", STEP_COUNTS)
@pytest.mark.parametrize("kind", ["fixed", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_budget_matches_the_formula(kind: str, T: int, warmup: int) -> None:
    schedule = EditBudgetSchedule(kind=kind, initial=50, final=10, warmup_steps=warmup, total_steps=T)
    assert schedule.as_list() == [paper_budget(kind, 50, 10, warmup, T, t) for t in range(1, T + 1)]


def test_cosine_without_warmup_is_the_papers_expression() -> None:
    s = EditBudgetSchedule(kind="cosine", initial=50, final=10, warmup_steps=0, total_steps=18)
    assert s.budget(9) == int(10 + 40 * 0.5 * (1 + math.cos(math.pi * 9 / 18))) == 30
    assert s.as_list()[:3] == [49, 48, 47]


@pytest.mark.parametrize("T", STEP_COUNTS)
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_ends_at_final_and_never_increases(kind: str, T: int) -> None:
    budgets = EditBudgetSchedule(kind=kind, initial=50, final=10, warmup_steps=0, total_steps=T).as_list()
    assert len(budgets) == T
    assert budgets[-1] == 10
    assert budgets[0] <= 50
    assert all(a >= b for a, b in zip(budgets, budgets[1:]))


def test_fixed_is_constant() -> None:
    assert EditBudgetSchedule(kind="fixed", initial=20, final=5, warmup_steps=0, total_steps=7).as_list() == [20] * 7


def test_warmup_ramps_up_to_initial_then_decays() -> None:
    budgets = EditBudgetSchedule(kind="linear", initial=40, final=0, warmup_steps=4, total_steps=8).as_list()
    # ramp: int(40*t/4) for t=1..3, then t=4..8 decays over (t-4)/4
    assert budgets == [10, 20, 30, 40, 30, 20, 10, 0]


def test_warmup_covering_the_whole_run_never_divides_by_zero() -> None:
    assert EditBudgetSchedule(kind="cosine", initial=30, final=10, warmup_steps=3, total_steps=3).as_list() == [
        10,
        20,
        30,
    ]
    assert EditBudgetSchedule(kind="cosine", initial=30, final=10, warmup_steps=6, total_steps=3).as_list() == [
        5,
        10,
        15,
    ]


@pytest.mark.parametrize("t", [0, -1, 8])
def test_budget_outside_the_run_is_an_error(t: int) -> None:
    schedule = EditBudgetSchedule(kind="cosine", initial=50, final=10, warmup_steps=0, total_steps=7)
    with pytest.raises(ValueError, match="1..7"):
        schedule.budget(t)


def test_empty_run_has_an_empty_schedule() -> None:
    assert EditBudgetSchedule(kind="cosine", initial=50, final=10, warmup_steps=0, total_steps=0).as_list() == []


def test_from_config_copies_the_settings() -> None:
    cfg = ScheduleConfig(kind="linear", initial=30, final=6, warmup_steps=2)
    s = EditBudgetSchedule.from_config(cfg, total_steps=12)
    assert (s.kind, s.initial, s.final, s.warmup_steps, s.total_steps) == ("linear", 30, 6, 2, 12)


def test_decaying_schedule_must_not_grow() -> None:
    with pytest.raises(ValueError, match="final"):
        EditBudgetSchedule(kind="cosine", initial=5, final=10, warmup_steps=0, total_steps=3)
    with pytest.raises(ValueError, match="kind"):
        EditBudgetSchedule(kind="step", initial=5, final=1, warmup_steps=0, total_steps=3)  # type: ignore[arg-type]


@given(
    kind=st.sampled_from(["linear", "cosine"]),
    final=st.integers(0, 100),
    extra=st.integers(0, 200),
    warmup=st.integers(0, 20),
    T=st.integers(1, 300),
)
def test_budget_stays_within_final_and_initial_after_warmup(
    kind: str, final: int, extra: int, warmup: int, T: int
) -> None:
    initial = final + extra
    budgets = EditBudgetSchedule(kind=kind, initial=initial, final=final, warmup_steps=warmup, total_steps=T).as_list()
    after = budgets[max(warmup, 1) - 1 :]
    assert all(final <= b <= initial for b in after)
    assert all(a >= b for a, b in zip(after, after[1:]))
    if T > warmup:
        assert budgets[-1] == final
    assert all(0 <= b <= initial for b in budgets)


@pytest.mark.parametrize(
    ("train_size", "batch_size", "epochs", "expected"),
    [
        (48, 8, 3, 18),  # exact batches
        (50, 8, 1, 6),  # remainder 2 < 4: dropped
        (52, 8, 1, 7),  # remainder 4 >= 4: an extra step
        (3, 8, 2, 2),  # smaller than one batch: still one step per epoch
        (1, 8, 1, 1),
        (0, 8, 3, 0),
        (5, 2, 1, 3),  # remainder 1 >= 1
    ],
)
def test_total_steps(train_size: int, batch_size: int, epochs: int, expected: int) -> None:
    assert total_steps(train_size, batch_size=batch_size, epochs=epochs) == expected


def test_total_steps_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        total_steps(10, batch_size=0, epochs=1)
