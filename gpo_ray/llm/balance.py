"""Several endpoints of one model (e.g. one vLLM server per GPU node), balanced by load.

Each request goes to the endpoint with the fewest requests in flight from this client (ties: the
one used least); the retry layer sits above, so a retried attempt may land on another endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient


class BalancedClient:
    def __init__(self, clients: Sequence[LLMClient]) -> None:
        if not clients:
            raise ValueError("BalancedClient needs at least one endpoint")
        self.clients = list(clients)
        self.in_flight = [0] * len(self.clients)
        self.sent = [0] * len(self.clients)

    def _pick(self) -> int:
        return min(range(len(self.clients)), key=lambda i: (self.in_flight[i], self.sent[i], i))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        i = self._pick()
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            return await self.clients[i].complete(request)
        finally:
            self.in_flight[i] -= 1

    async def aclose(self) -> None:
        for c in self.clients:
            close = getattr(c, "aclose", None)
            if close is not None:
                await close()
