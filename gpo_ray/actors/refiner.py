"""Refiner actor: a thin Ray shell that holds an optimizer-LLM client and runs core candidate generation."""

from __future__ import annotations

from pathlib import Path

import ray

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.config import LLMRoleConfig
from gpo_ray.core.generation import (
    GenerationRequest,
    GenerationResult,
    OptimizerTextRequest,
    ask_optimizer,
    generate_candidates,
)
from gpo_ray.llm.accounting import CURRENT_ACCOUNT, AccountedCounters
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.llm.run_limits import PermitSource
from gpo_ray.llm.stack import build_client
from gpo_ray.observability.metrics import MetricsContext, llm_usage_listener
from gpo_ray.vocabulary import Role


class Refiner(WhereAmI):
    """Builds the meta-prompt for a task's step and asks the optimizer LLM for candidates.

    The client is created here, in the worker process; the edit budget arrives in the request
    (the controller owns the one schedule), so no refiner ever computes a budget of its own.
    """

    def __init__(self, role: LLMRoleConfig, *, base_url: str | list[str], model: str, cache_dir: str | None,
                 metrics: MetricsContext | None = None, permits: PermitSource | None = None,
                 callers: int = 1) -> None:
        self.announce_start("refiner")
        # Metrics are made here, in the worker process; the counters feed them (usage.json and gpo_llm_* agree).
        self.counters = AccountedCounters(listener=llm_usage_listener(metrics, role=Role.OPTIMIZER))
        cache = ResponseCache(Path(cache_dir) / Role.OPTIMIZER) if cache_dir else None
        self.llm = build_client(role, role_name=Role.OPTIMIZER, base_url=base_url, model=model, cache=cache,
                                counters=self.counters, permits=permits, callers=callers)

    async def generate(self, request: GenerationRequest, account: str | None = None) -> GenerationResult:
        CURRENT_ACCOUNT.set(account)  # `account`: the sweep sub-run whose usage this is (None: totals only)
        return await generate_candidates(self.llm, request)

    async def ask(self, request: OptimizerTextRequest, account: str | None = None) -> str:
        CURRENT_ACCOUNT.set(account)
        return await ask_optimizer(self.llm, request)

    async def usage(self, account: str | None = None) -> dict:
        return self.counters.snapshot_of(account)


RefinerActor = ray.remote(Refiner)
