"""The usage ledger of a run: every actor's counts summed per LLM role, across actor restarts and resumed
invocations, and the global budget read from them (usage.json is its view, written by the state writer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gpo_ray.config import RunConfig, judge_metrics
from gpo_ray.vocabulary import Role


# Usage entries that are levels, not counts (llm/accounting.py): not carried over from earlier processes or runs.
LEVELS = ("concurrency",)


def sum_usage(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The counts of `snapshots` added up (the levels left out: `current_levels` sums them)."""
    total: dict[str, Any] = {}
    for snap in snapshots:
        for k, v in snap.items():
            if k in LEVELS:
                continue
            if isinstance(v, dict):
                inner = total.setdefault(k, {})
                for kk, vv in v.items():
                    inner[kk] = inner.get(kk, 0) + vv
            elif isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total


def current_levels(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The levels of the actors' last answers, summed per endpoint: e.g. the calls a role's actors together may have
    in flight to each endpoint now (`limit`), the sum of each one's highest (`max`) and their caps."""
    levels: dict[str, Any] = {}
    for answer in answers:
        for name in LEVELS:
            into = levels.setdefault(name, {})
            for url, level in (answer.get(name) or {}).items():
                summed = into.setdefault(url, {})
                for k, v in level.items():
                    summed[k] = summed.get(k, 0) + v
    return {name: per_url for name, per_url in levels.items() if per_url}


def counts_went_down(now: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether any count of `now` is below `before`'s: the counters are monotonic within one process."""
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) and now.get(k, 0) < v
               for k, v in before.items())


class UsageAcrossRestarts:
    """Each actor's usage over all the processes Ray ran it in (see UsageLedger.refresh).

    Answers must come in the order they were asked: an actor's answer lower than the one before is read as a restart,
    so an older answer taken after a newer one would carry the newer one over twice (refresh runs one at a time
    for this)."""

    def __init__(self, *, log: Any) -> None:
        self._log = log
        self._last_answer: dict[tuple[str, int], dict[str, Any]] = {}  # (role, actor index) -> its last usage()
        self._earlier: dict[tuple[str, int], dict[str, Any]] = {}  # the counts of its earlier processes

    def counts(self, role: str, answers: Sequence[Any]) -> list[dict[str, Any]]:
        """Per actor of `role` (its usage() answer, or the exception of one that did not answer): the counts of its
        earlier processes, then its last answer."""
        out: list[dict[str, Any]] = []
        for index, answer in enumerate(answers):
            key = (str(role), index)
            last = self._last_answer.get(key)
            if isinstance(answer, dict):
                if last is not None and counts_went_down(answer, last):
                    self._earlier[key] = sum_usage([self._earlier.get(key, {}), last])
                    self._log.info("usage_counter_reset", role=str(role), actor=index,
                                   carried_requests=last.get("requests", 0))
                self._last_answer[key] = last = answer
            out += [self._earlier.get(key, {}), last or {}]
        return out


class UsageLedger:
    """What a run has spent, per role (usage.json's sections), and whether its global budget is spent.

    `before` is what the interrupted invocation spent (its usage.json): a resumed run counts on from it, for reports
    and for the budget. `account` names a sweep's sub-run in the sweep's shared actors (None: the actors are the
    run's own)."""

    def __init__(self, config: RunConfig, *, before: dict[str, Any], refiners: Sequence[Any],
                 evaluators: Sequence[Any], account: str | None = None, log: Any) -> None:
        self.budget = config.budget
        # The judge is a role of its own only in a run with a judge metric (usage.json keeps its two roles otherwise).
        self.roles = tuple(r for r in Role if r is not Role.JUDGE or judge_metrics(config))
        self.before = before
        self.usage: dict[str, Any] = {role: dict(before.get(role, {})) for role in self.roles}
        self._refiners = list(refiners)
        self._evaluators = list(evaluators)
        self._args = () if account is None else (account,)  # a sweep's sub-run: its account's usage
        self._across_restarts = UsageAcrossRestarts(log=log)
        # One refresh at a time (see refresh): answers are then taken in the order they were asked.
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, Any]:
        """This invocation's usage: what usage.json held before it, plus every actor's counts.

        An actor's counters start at zero in each process: after Ray restarts a killed actor, its new counts alone
        would drop what the dead process had counted (budgets and usage.json undercounting). So each actor's last
        answer is kept: an actor that does not answer (being restarted) still counts what it last reported, and
        one whose counts went down was restarted, so its last answer is carried over and its new counts add to it
        (a counter reset, as Prometheus's rate() reads one). What a killed process counted after its last answer,
        at most STATE_INTERVAL_S of calls, is lost; the logs have each failed attempt.

        Refreshes run one at a time. Several callers refresh (the every-second keeper, the deferred state write, a
        budget's per-step check, the run's end); two at once could take their answers in the opposite order to
        the one they asked in, and an actor's older, lower answer taken after a newer one looked like a restart:
        the newer answer was carried over and counted twice (issue 23: usage.json said 39 optimizer calls where
        the endpoint and the exported metrics saw 36, and a run alone 21 where its sweep twin said 18)."""
        async with self._lock:
            args = self._args
            opt = await asyncio.gather(*(h.usage.remote(*args) for h in self._refiners), return_exceptions=True)
            task = await asyncio.gather(*(h.usage.remote(*args) for h in self._evaluators), return_exceptions=True)
            judged: list[Any] = []
            if Role.JUDGE in self.roles:  # the judge is asked in the evaluators, counted there on its own
                judged = await asyncio.gather(*(h.judge_usage.remote(*args) for h in self._evaluators),
                                              return_exceptions=True)
            answered = {Role.OPTIMIZER: opt, Role.TASK_MODEL: task, Role.JUDGE: judged}
            usage = {}
            for role in self.roles:
                counts = self._across_restarts.counts(role, answered[role])  # per actor: earlier processes, last
                before = self.before.get(role, {})
                levels = current_levels(counts[1::2]) or {k: before[k] for k in LEVELS if k in before}
                usage[role] = sum_usage([before, *counts]) | levels
            self.usage = usage
            return self.usage

    def total_calls(self) -> int:
        return sum(int(u.get("requests", 0)) for u in self.usage.values())

    def total_tokens(self) -> int:
        return sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0)) for u in self.usage.values())

    def budget_set(self) -> bool:
        """Whether the run has a global budget (then usage is refreshed at every step, so it stops on time)."""
        return bool(self.budget.max_calls or self.budget.max_tokens)

    def budget_spent(self) -> bool:
        b = self.budget
        return bool((b.max_calls and self.total_calls() >= b.max_calls)
                    or (b.max_tokens and self.total_tokens() >= b.max_tokens))
