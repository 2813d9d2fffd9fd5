"""Several endpoints of one model (e.g. one vLLM server per GPU node), balanced by load, with outlier ejection.

Each request goes to the open endpoint with the fewest requests in flight from this client (ties: the one used
least); the retry layer sits above, so a retried attempt may land on another endpoint. An endpoint that fails
several times in a row (refused, timed out, 5xx, stalled) or holds a request far longer than the others answer
(wedged) is ejected for a growing interval, and a request it holds as wedged is given up at once so the retry
layer sends it elsewhere; after the interval one probe decides whether it is taken back (llm/health.py). Each
client (each actor) keeps its own record: what one actor learns costs it a few failures, not a run-wide lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.errors import LLMError, RetryableLLMError
from gpo_ray.llm.health import EndpointState, HealthBook, HealthPolicy
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient


def public_url(url: str) -> str:
    """An endpoint as usage.json and the report name it: without user:password@ or a query (they may hold keys)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WedgedEndpoint(RetryableLLMError):
    """The endpoint held this request far longer than the others answered theirs: given up, to be sent elsewhere."""

    kind = "wedged"


class BalancedClient:
    def __init__(self, clients: Sequence[LLMClient], *, endpoints: Sequence[str] = (),
                 counters: UsageCounters | None = None, policy: HealthPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not clients:
            raise ValueError("BalancedClient needs at least one endpoint")
        self.clients = list(clients)
        self.names = [public_url(u) for u in endpoints] or [f"endpoint-{i}" for i in range(len(self.clients))]
        self.in_flight = [0] * len(self.clients)
        self.sent = [0] * len(self.clients)
        self.health = HealthBook(len(self.clients), policy or HealthPolicy())
        self.last_success = [float("-inf")] * len(self.clients)
        self.counters = counters
        self.clock = clock
        self.told_admitted: list[bool | None] = [None] * len(self.clients)  # what the counters last heard
        self._tell_states()

    def _pick(self) -> int:
        open_ = self.health.open(self.clock())
        return min(open_, key=lambda i: (self.in_flight[i], self.sent[i], i))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        i = self._pick()
        started = self.clock()
        self.health.sent(i, started)
        self.in_flight[i] += 1
        self.sent[i] += 1
        if self.counters is not None:
            self.counters.record_endpoint(self.names[i])
        call = asyncio.ensure_future(self.clients[i].complete(request))
        try:
            response = await self._await_unless_wedged(i, call, started)
        except LLMError as e:
            if isinstance(e, WedgedEndpoint) and self.counters is not None:
                self.counters.record_error(e.kind)  # the transport below never saw it fail
            self._failed(i, e.kind)
            raise
        except BaseException:
            call.cancel()
            raise
        finally:
            self.in_flight[i] -= 1
        if self.health.records[i].ejections:  # a probe answered: back in the balance with an even share from now
            self.sent[i] = max(self.sent[i], min(n for j, n in enumerate(self.sent) if j != i))
        self.health.succeeded(i, self.clock() - started)
        self.last_success[i] = self.clock()
        self._tell_states()
        return response

    async def _await_unless_wedged(self, i: int, call: asyncio.Future, started: float) -> ChatResponse:
        """The endpoint's answer; WedgedEndpoint when it holds the request past the wedge limit while another
        endpoint has answered since the request was sent (a slow model everywhere is not a wedged endpoint)."""
        while True:
            limit = self.health.wedge_after_s()
            wait = self.health.policy.wedge_floor_s if limit is None else max(0.05, started + limit - self.clock())
            done, _ = await asyncio.wait({call}, timeout=wait)
            if done:
                return call.result()
            others_answered = any(t > started for j, t in enumerate(self.last_success) if j != i)
            silent = self.last_success[i] <= started  # an endpoint still answering others is busy, not wedged
            if limit is not None and self.clock() - started >= limit and others_answered and silent:
                call.cancel()
                raise WedgedEndpoint(f"no answer in {self.clock() - started:.1f}s while the other endpoints "
                                     f"answered (limit {limit:.1f}s)", endpoint=self.names[i])

    def _failed(self, i: int, kind: str) -> None:
        if self.health.failed(i, kind, self.clock()) and self.counters is not None:
            self.counters.record_endpoint(self.names[i], ejected=True)
        self._tell_states()

    def _tell_states(self) -> None:
        """Tell the counters (the live metrics' gpo_llm_endpoint_up) of each endpoint taken out or back since they
        last heard; all of them at the start."""
        if self.counters is None:
            return
        for i, state in enumerate(self.health.states(self.clock())):
            admitted = state == EndpointState.HEALTHY
            if admitted != self.told_admitted[i]:
                self.told_admitted[i] = admitted
                self.counters.record_endpoint_state(self.names[i], admitted=admitted)

    async def aclose(self) -> None:
        for c in self.clients:
            close = getattr(c, "aclose", None)
            if close is not None:
                await close()
