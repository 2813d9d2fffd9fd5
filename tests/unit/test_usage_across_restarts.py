"""usage.json and the budget count what an actor's earlier processes counted, after Ray restarted it."""

from __future__ import annotations

from gpo_ray.controller.ledger import UsageAcrossRestarts, current_levels, sum_usage


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **kw) -> None:
        self.events.append((event, kw))


def usage(requests: int, *, errors: int = 0) -> dict:
    return {"calls": requests, "requests": requests, "prompt_tokens": 10 * requests, "errors": {"stalled": errors}}


def total(counts: list[dict]) -> dict:
    return sum_usage(counts)


def test_a_restarted_actor_keeps_what_its_killed_process_counted() -> None:
    log = Log()
    across = UsageAcrossRestarts(log=log)
    assert total(across.counts("task_model", [usage(40, errors=2), usage(5)]))["requests"] == 45
    # actor 0 is being restarted: it does not answer, and still counts what it last said
    assert total(across.counts("task_model", [RuntimeError("actor unavailable"), usage(7)]))["requests"] == 47
    # its new process starts from zero: a counter reset, carried over
    now = total(across.counts("task_model", [usage(3, errors=1), usage(9)]))
    assert now["requests"] == 40 + 3 + 9
    assert now["prompt_tokens"] == 10 * (40 + 3 + 9)
    assert now["errors"] == {"stalled": 3}
    assert [e for e, _ in log.events] == ["usage_counter_reset"]
    assert log.events[0][1] == {"role": "task_model", "actor": 0, "carried_requests": 40}
    # and counts on from there, with no second carry
    assert total(across.counts("task_model", [usage(8), usage(9)]))["requests"] == 40 + 8 + 9
    assert len(log.events) == 1


def test_growing_counts_are_never_taken_for_a_restart() -> None:
    across = UsageAcrossRestarts(log=Log())
    for n in (0, 1, 5, 5, 30):
        assert total(across.counts("optimizer", [usage(n)]))["requests"] == n


def test_roles_and_actors_are_kept_apart() -> None:
    across = UsageAcrossRestarts(log=Log())
    across.counts("optimizer", [usage(10)])
    across.counts("task_model", [usage(100)])
    # the task model's actor 0 restarted; the optimizer's did not
    assert total(across.counts("task_model", [usage(1)]))["requests"] == 101
    assert total(across.counts("optimizer", [usage(11)]))["requests"] == 11


def test_the_adaptive_concurrency_is_the_live_processes_summed_never_carried_over() -> None:
    """A level, not a count: a restarted actor's old limit says nothing about the calls in flight now."""
    def with_limit(requests: int, limit: int) -> dict:
        return usage(requests) | {"concurrency": {"u": {"limit": limit, "min": 1, "max": 8, "cap": 8}}}

    across = UsageAcrossRestarts(log=Log())
    across.counts("task_model", [with_limit(40, 6), with_limit(5, 3)])
    counts = across.counts("task_model", [with_limit(2, 4), with_limit(9, 5)])  # actor 0 restarted
    assert total(counts)["requests"] == 40 + 2 + 9 and "concurrency" not in total(counts)
    assert current_levels(counts[1::2]) == {"concurrency": {"u": {"limit": 9, "min": 2, "max": 16, "cap": 16}}}
    assert current_levels([usage(3)]) == {}
