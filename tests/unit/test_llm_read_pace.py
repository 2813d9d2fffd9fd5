"""The idle-read limit of a body that has begun (llm/read_pace.py): the floor, what an endpoint's pace teaches it,
cuts in a row, the read timeout above it all."""

from __future__ import annotations

from gpo_ray.llm.read_pace import GAP_FACTOR, ReadPace


def test_a_new_endpoint_gets_the_floor_and_a_body_that_came_in_one_piece_keeps_it():
    pace = ReadPace(floor_s=1.0, ceiling_s=10.0)
    assert pace.idle_limit(0.0) == 1.0
    for _ in range(10):
        pace.body_read(0.002)
    assert pace.idle_limit(0.0) == 1.0


def test_the_pace_of_recent_bodies_and_of_this_body_raise_the_limit_up_to_the_read_timeout():
    pace = ReadPace(floor_s=1.0, ceiling_s=10.0)
    assert pace.idle_limit(0.5) == GAP_FACTOR * 0.5  # this body has paused 0.5 s already: it may pause 2 s
    pace.body_read(0.75)
    assert pace.idle_limit(0.0) == GAP_FACTOR * 0.75
    pace.body_read(5.0)
    assert pace.idle_limit(0.0) == 10.0  # never past read_timeout_s


def test_cuts_in_a_row_double_the_floor_and_a_body_read_resets_it():
    pace = ReadPace(floor_s=1.0, ceiling_s=10.0)
    limits = []
    for _ in range(5):
        pace.body_cut()
        limits.append(pace.idle_limit(0.0))
    assert limits == [2.0, 4.0, 8.0, 10.0, 10.0]
    pace.body_read(0.01)
    assert pace.idle_limit(0.0) == 1.0


def test_without_a_floor_only_the_read_timeout_bounds_a_body():
    assert ReadPace(floor_s=None, ceiling_s=10.0).idle_limit(3.0) == 10.0
    assert ReadPace(floor_s=None, ceiling_s=None).idle_limit(3.0) is None
    no_ceiling = ReadPace(floor_s=1.0, ceiling_s=None)
    for _ in range(20):
        no_ceiling.body_cut()
    assert no_ceiling.idle_limit(0.0) == 64.0  # doubling stops
