"""The chaos soak's rules (benchmarks/chaos.py, issues 17 and 26): when an endpoint fault is injected, and when a
fault counts as seen (a killed or wedged endpoint: ejected and re-admitted, read from usage.json). Fast: no Ray, no endpoint; the soak's own run is not part of the tests."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.chaos import (
    Fault,
    endpoint_faults_seen,
    endpoint_usage,
    judge,
    readmitted,
    table,
    wait_for_traffic,
)


class BurstyEndpoint:
    """/stats of an endpoint that gets a round of requests every `every` polls and none in between."""

    def __init__(self, *, every: int, per_round: int = 8) -> None:
        self.every, self.per_round, self.polls = every, per_round, 0

    def stats(self) -> dict[str, Any]:
        self.polls += 1
        return {"requests": (self.polls // self.every) * self.per_round}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_endpoint_fault_waits_for_any_request_not_a_steady_stream() -> None:
    # A round of requests every 2 s (8 polls of 0.25 s): the old rule (new requests in four half seconds in a row)
    # never held for a small run; any new request from the current driver is enough.
    clock = Clock()
    waited = wait_for_traffic(BurstyEndpoint(every=8), clock=clock, sleep=clock.sleep)
    assert waited is not None and waited <= 2.0


def test_requests_count_only_once_the_current_driver_is_up_and_the_wait_is_bounded() -> None:
    clock = Clock()
    resumed_at = 10.0  # before, the requests are a killed driver's last ones
    waited = wait_for_traffic(BurstyEndpoint(every=4), lambda: clock.now >= resumed_at, clock=clock,
                              sleep=clock.sleep)
    assert waited is not None and waited >= resumed_at
    clock = Clock()
    assert wait_for_traffic(BurstyEndpoint(every=10**9), limit_s=60, clock=clock, sleep=clock.sleep) is None
    assert clock.now >= 60


def stall(at: float, served: int, *, effect_until: float | None = None) -> Fault:
    outcome: dict[str, Any] = {"served": served}
    if effect_until is not None:
        outcome["effect_until_s"] = effect_until
    return Fault(at_s=at, kind="endpoint_stalls", params={"fault": "stall", "rate": 0.05, "for_s": 14.4},
                 injected_at_s=at, outcome=outcome, next_step_s=0.5)


def kill(at: float) -> Fault:
    return Fault(at_s=at, kind="driver_sigkill", injected_at_s=at, outcome={}, next_step_s=0.3)


def evidence(stalled_logged: int = 0, stalled_in_usage: int = 0) -> dict[str, Any]:
    return {"retries_by_kind": {"stalled": stalled_logged} if stalled_logged else {},
            "usage_errors": {"stalled": stalled_in_usage} if stalled_in_usage else {},
            "actor_restarts_logged": {}, "events": {}, "driver_events": {"run_resumed": 1}}


def test_stalls_cut_short_by_a_driver_kill_before_the_read_timeout_are_not_judged_and_say_why() -> None:
    # The short soak of seed 2: stalls from 145.9 s for 14.4 s, the driver killed at 160.8 s - before the 10 s read
    # timeout of the stalls served after 150.8 s, so no client lived to see them.
    schedule = [stall(145.9, 3), kill(160.8)]
    judge(schedule, evidence(), stops=[])
    assert schedule[0].seen is None and "cut short" in (schedule[0].not_judged or "")
    assert schedule[1].seen is True
    row = next(r for r in table(schedule) if r["kind"] == "endpoint_stalls")
    assert (row["scheduled"], row["injected"], row["seen"], row["not_judged"]) == (1, 1, 0, 1)
    assert endpoint_faults_seen(schedule, evidence())["stall"] == {"served": 0, "served_cut_short": 3, "logged": 0,
                                                                   "usage": 0}


def test_stalls_with_time_to_fail_must_all_be_in_the_logs_or_usage() -> None:
    schedule = [stall(145.9, 3, effect_until=171.0), kill(172.0)]
    judge(schedule, evidence(stalled_logged=3), stops=[])
    assert schedule[0].seen is True and schedule[0].not_judged is None
    schedule = [stall(145.9, 3, effect_until=171.0), kill(172.0)]
    judge(schedule, evidence(stalled_logged=2), stops=[])  # one stall seen nowhere: the soak says so
    assert schedule[0].seen is False
    schedule = [stall(145.9, 3, effect_until=171.0), kill(172.0)]
    judge(schedule, evidence(stalled_in_usage=3), stops=[])
    assert schedule[0].seen is True


def test_a_window_no_request_fell_in_is_listed_as_skipped_not_counted_as_seen() -> None:
    never_run = Fault(at_s=18.7, kind="endpoint_500s", params={"fault": "500", "rate": 0.4, "for_s": 13.0},
                      skipped="no request to the endpoint within 60 s")
    schedule = [never_run, stall(40.0, 0, effect_until=66.0)]
    judge(schedule, evidence(), stops=[])
    rows = {r["kind"]: r for r in table(schedule)}
    assert (rows["endpoint_500s"]["scheduled"], rows["endpoint_500s"]["injected"],
            rows["endpoint_500s"]["skipped"]) == (1, 0, 1)
    assert (rows["endpoint_stalls"]["injected"], rows["endpoint_stalls"]["skipped"]) == (0, 1)
    assert schedule[1].skipped == "no request fell in the window" and schedule[1].seen is None


def down(kind: str, *, ejections: int, readmitted_after: float | None, not_judged: str | None = None) -> Fault:
    return Fault(at_s=40.0, kind=kind, params={"target": 1, "down_s": 14.0}, injected_at_s=40.0, next_step_s=0.7,
                 not_judged=not_judged,
                 outcome={"endpoint": "http://127.0.0.1:4001/v1", "ejections": ejections,
                          "readmitted_after_s": readmitted_after})


def test_a_killed_or_wedged_endpoint_is_seen_only_ejected_and_taken_back() -> None:
    schedule = [down("endpoint_killed", ejections=3, readmitted_after=8.0),
                down("endpoint_wedged", ejections=1, readmitted_after=None),  # never back in the balance
                down("endpoint_killed", ejections=0, readmitted_after=2.0),  # back, but nothing ejected it
                down("endpoint_wedged", ejections=1, readmitted_after=None, not_judged="the driver ended 3.0 s after")]
    judge(schedule, evidence(), stops=[])
    assert [f.seen for f in schedule] == [True, False, False, None]
    rows = {r["kind"]: r for r in table(schedule)}
    assert (rows["endpoint_killed"]["injected"], rows["endpoint_killed"]["seen"]) == (2, 1)
    assert (rows["endpoint_wedged"]["seen"], rows["endpoint_wedged"]["not_judged"]) == (0, 1)


def test_re_admission_wants_more_than_probes_and_half_an_even_share_of_both_roles_requests(tmp_path) -> None:
    url, other = "http://127.0.0.1:4001/v1", "http://127.0.0.1:4000/v1"
    assert endpoint_usage(tmp_path, url) == (0, 0, 0)  # before usage.json is written
    (tmp_path / "usage.json").write_text(json.dumps({
        "task_model": {"requests": 30, "endpoints": {url: 10, other: 20}, "ejections": {url: 2}},
        "optimizer": {"requests": 12, "endpoints": {url: 2, other: 10}, "ejections": {url: 1}},
    }))
    assert endpoint_usage(tmp_path, url) == (12, 3, 42)
    assert readmitted(6, 36) and not readmitted(6, 37)  # half of an even third
    assert not readmitted(5, 10)  # a few requests are only probes
