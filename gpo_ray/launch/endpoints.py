"""A run's endpoints as resolved at run time: the URLs its config names, or the embedded llama.cpp server it starts
when a role names none (its URL is only known once it runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.config import EndpointSpec, LLMRoleConfig, RunConfig, judge_metrics


@dataclass(frozen=True)
class Endpoint:
    """A role's servers as resolved at run time (the embedded server's URL is only known once it runs)."""

    specs: tuple[EndpointSpec, ...]
    model: str

    @property
    def base_url(self) -> str:
        return ", ".join(s.base_url for s in self.specs)

    @property
    def urls(self) -> list[str]:
        return [s.base_url for s in self.specs]


@contextlib.contextmanager
def endpoints_for(config: RunConfig, *, log_dir: Path) -> Iterator[tuple[Endpoint, Endpoint, bool, Any]]:
    """(optimizer endpoint, task endpoint, structured output?, embedded server or None) - starting the embedded
    model if a role has no URL. Its log is appended to `log_dir/local-server.log`, where a resume adds to it and
    a death message can point."""
    needs_local = (config.optimizer_model.is_embedded or config.task_model.is_embedded
                   or (bool(judge_metrics(config)) and config.judge_model.is_embedded))
    server = None
    local: Endpoint | None = None
    try:
        if needs_local:
            from gpo_ray.llm.local_server import MODEL_NAME, LocalModelServer

            server = LocalModelServer(log_path=log_dir / "local-server.log")
            local = Endpoint((EndpointSpec(base_url=server.start()),), MODEL_NAME)

        def pick(role: LLMRoleConfig) -> Endpoint:
            if role.is_embedded:
                assert local is not None
                return Endpoint(local.specs, role.model or local.model)
            return Endpoint(tuple(role.all_endpoints()), role.model or "default")

        yield pick(config.optimizer_model), pick(config.task_model), config.optimizer_model.uses_structured_output, server
    finally:
        if server is not None:
            server.stop()


def judge_endpoint(config: RunConfig, server: Any) -> Endpoint | None:
    """The judge model's servers in a run with a `kind: judge` metric (the embedded server when judge_model names
    none: `server`, which endpoints_for started), else None."""
    if not judge_metrics(config):
        return None
    role = config.judge_model
    if role.is_embedded:
        from gpo_ray.llm.local_server import MODEL_NAME

        return Endpoint((EndpointSpec(base_url=server.base_url),), role.model or MODEL_NAME)
    return Endpoint(tuple(role.all_endpoints()), role.model or "default")
