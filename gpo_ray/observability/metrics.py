"""Live metrics: the catalog of gpo_* series and a small facade that records them through `ray.util.metrics`.

Callers hold a `Metrics` facade and never import Ray: `metrics_for(...)` hands out the Ray-backed one inside a
Ray worker or driver with metrics on, and a no-op one everywhere else (unit tests, the sequential reference,
`tracking.ray_metrics: false`). Ray metric objects are created lazily, per facade and so per process, never
as module globals (each Ray worker is its own process).

Ray exports every series with a `ray_` prefix in Prometheus format (so `gpo_llm_calls_total` is scraped as
`ray_gpo_llm_calls_total`); docs/observability.md lists them all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from gpo_ray.config import RunConfig

Kind = Literal["counter", "gauge", "histogram"]

LLM_LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_LATENCY_BOUNDS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...]
    unit: str = ""
    boundaries: tuple[float, ...] = ()


_LLM = ("run", "role")
_ENDPOINT = ("run", "role", "endpoint")  # an endpoint of a role with several (llm/balance.py), named by its public URL
_TASK = ("run", "task")

CATALOG: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("gpo_llm_calls_total", "counter", "Completions asked for by callers, cache hits included.", _LLM),
        MetricSpec("gpo_llm_requests_total", "counter",
                   "HTTP requests sent to the endpoint, retried attempts included.", _LLM),
        MetricSpec("gpo_llm_tokens_total", "counter", "Tokens the endpoint reported, by kind=prompt|completion.",
                   (*_LLM, "kind"), unit="tokens"),
        MetricSpec("gpo_llm_errors_total", "counter", "Failed endpoint attempts, by error kind.", (*_LLM, "kind")),
        MetricSpec("gpo_llm_retries_total", "counter", "Attempts repeated after a retryable error.", _LLM),
        MetricSpec("gpo_llm_cache_hits_total", "counter", "Completions served from the response cache.", _LLM),
        MetricSpec("gpo_llm_call_latency_seconds", "histogram",
                   "A caller's completion not served from cache: slot and rate-limit waits, retries and backoff "
                   "included.", _LLM, unit="seconds", boundaries=LLM_LATENCY_BOUNDS),
        MetricSpec("gpo_llm_request_latency_seconds", "histogram", "One endpoint attempt, failed ones included.",
                   _LLM, unit="seconds", boundaries=LLM_LATENCY_BOUNDS),
        MetricSpec("gpo_llm_endpoint_requests_total", "counter",
                   "HTTP requests sent to one endpoint of a role with several, retried attempts included.", _ENDPOINT),
        MetricSpec("gpo_llm_endpoint_ejections_total", "counter",
                   "Times one endpoint of a role with several was ejected (failed in a row, or wedged).", _ENDPOINT),
        MetricSpec("gpo_llm_endpoint_up", "gauge",
                   "1 while this process's client admits the endpoint, 0 while it has it ejected (a probe included).",
                   _ENDPOINT),
        MetricSpec("gpo_queue_depth", "gauge",
                   "Work handed to a pool and not finished: (prompt, example) items for pool=evaluator, "
                   "generation requests for pool=refiner.", ("run", "pool"), unit="items"),
        MetricSpec("gpo_step_latency_seconds", "histogram", "Wall time of one optimization step of a task.", _TASK,
                   unit="seconds", boundaries=STEP_LATENCY_BOUNDS),
        MetricSpec("gpo_steps_completed_total", "counter", "Optimization steps completed (step 0 excluded).", _TASK),
        MetricSpec("gpo_eval_score", "gauge", "Eval score of the prompt the latest step chose.", _TASK),
        MetricSpec("gpo_best_eval_score", "gauge", "Best eval score so far.", _TASK),
        MetricSpec("gpo_edit_budget", "gauge", "The latest step's edit budget (max words changed).", _TASK,
                   unit="words"),
        MetricSpec("gpo_tracking_errors_total", "counter", "Failed calls to an experiment tracker (never fatal).",
                   ("run", "backend")),
    )
}


class Metrics(Protocol):
    """What callers record through. Tags beyond the bound defaults (run, role) are passed per call."""

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None: ...
    def set(self, name: str, value: float, **tags: str) -> None: ...
    def observe(self, name: str, value: float, **tags: str) -> None: ...


class NullMetrics:
    """Records nothing: metrics off, Ray absent, or a test."""

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        pass

    def set(self, name: str, value: float, **tags: str) -> None:
        pass

    def observe(self, name: str, value: float, **tags: str) -> None:
        pass


@dataclass
class RayMetrics:
    """`ray.util.metrics` behind the facade; one Ray metric object per name, made on first use in this process.

    A failure to record is logged once per metric and otherwise ignored: metrics never stop a run."""

    default_tags: Mapping[str, str]
    _objects: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _broken: set[str] = field(default_factory=set, init=False, repr=False)

    def _metric(self, name: str) -> Any:
        obj = self._objects.get(name)
        if obj is None:
            from ray.util import metrics as rm

            spec = CATALOG[name]
            if spec.kind == "counter":
                obj = rm.Counter(name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "gauge":
                obj = rm.Gauge(name, description=spec.description, tag_keys=spec.tag_keys)
            else:
                obj = rm.Histogram(name, description=spec.description, boundaries=list(spec.boundaries),
                                   tag_keys=spec.tag_keys)
            defaults = {k: v for k, v in self.default_tags.items() if k in spec.tag_keys}
            obj.set_default_tags(defaults)
            self._objects[name] = obj
        return obj

    def _record(self, method: str, name: str, value: float, tags: dict[str, str]) -> None:
        if name in self._broken:
            return
        try:
            getattr(self._metric(name), method)(value, tags=tags or None)
        except Exception as e:  # noqa: BLE001 - a metric must never fail the work it measures
            self._broken.add(name)
            structlog.get_logger().warning("metric_record_failed", metric=name, error=f"{type(e).__name__}: {e}")

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        if value > 0:  # Ray counters refuse 0
            self._record("inc", name, value, tags)

    def set(self, name: str, value: float, **tags: str) -> None:
        self._record("set", name, value, tags)

    def observe(self, name: str, value: float, **tags: str) -> None:
        self._record("observe", name, value, tags)


@dataclass(frozen=True)
class MetricsContext:
    """What a process needs to make its facade: sent to actors (plain data, picklable)."""

    run: str
    enabled: bool = True


def run_metrics_context(config: RunConfig, run_path: Path) -> MetricsContext:
    """Every process of a run tags its gpo_* metrics with the run directory's name."""
    return MetricsContext(run=run_path.name, enabled=config.tracking.ray_metrics)


def metrics_for(context: MetricsContext | None, **default_tags: str) -> Metrics:
    """The Ray-backed facade when metrics are on and this process is part of a Ray cluster, else a no-op."""
    if context is None or not context.enabled:
        return NullMetrics()
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency; the core runs without it
        return NullMetrics()
    if not ray.is_initialized():
        return NullMetrics()
    return RayMetrics({"run": context.run, **default_tags})


class LLMUsageMetrics:
    """The `UsageCounters` listener that mirrors every counted LLM event into gpo_llm_* series.

    Counts are summed here and handed to Ray at most every `flush_interval_s` (and whenever usage is read):
    recording each of the ~7 events of a call into Ray metrics cost more CPU than the HTTP request itself,
    and Ray exports only every few seconds anyway."""

    def __init__(self, metrics: Metrics, *, flush_interval_s: float = 0.5) -> None:
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self._counts: dict[tuple[str, str | None], int] = {}
        self._latencies: list[tuple[str, float]] = []
        # Each endpoint's last state, set again at every flush: a gauge is a level, and one set once at the start
        # (an endpoint never ejected) was missing from the export by the end of a long run.
        self._endpoint_up: dict[str, bool] = {}
        self._last_flush = time.monotonic()

    def on_count(self, what: str, amount: int = 1, *, kind: str | None = None) -> None:
        name = _USAGE_SERIES.get(what)
        if name is not None:
            key = (name, kind)
            self._counts[key] = self._counts.get(key, 0) + amount
            self._maybe_flush()

    def on_latency(self, what: str, seconds: float) -> None:
        name = _LATENCY_SERIES.get(what)
        if name is not None:
            self._latencies.append((name, seconds))
            self._maybe_flush()

    def on_endpoint_state(self, endpoint: str, *, admitted: bool) -> None:
        self._endpoint_up[endpoint] = admitted
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        counts, self._counts = self._counts, {}
        latencies, self._latencies = self._latencies, []
        for (name, tag), amount in counts.items():
            if tag is None:
                self.metrics.inc(name, amount)
            else:
                self.metrics.inc(name, amount, **{_TAG_KEY.get(name, "kind"): tag})
        for name, seconds in latencies:
            self.metrics.observe(name, seconds)
        for endpoint, admitted in self._endpoint_up.items():
            self.metrics.set("gpo_llm_endpoint_up", 1.0 if admitted else 0.0, endpoint=endpoint)


_USAGE_SERIES = {
    "calls": "gpo_llm_calls_total",
    "requests": "gpo_llm_requests_total",
    "tokens": "gpo_llm_tokens_total",
    "errors": "gpo_llm_errors_total",
    "retries": "gpo_llm_retries_total",
    "cache_hits": "gpo_llm_cache_hits_total",
    "endpoint_requests": "gpo_llm_endpoint_requests_total",
    "ejections": "gpo_llm_endpoint_ejections_total",
}
# The tag a count's `kind` goes in: the token or error kind, or for the per-endpoint series the endpoint.
_TAG_KEY = {"gpo_llm_endpoint_requests_total": "endpoint", "gpo_llm_endpoint_ejections_total": "endpoint"}
_LATENCY_SERIES = {"call": "gpo_llm_call_latency_seconds", "request": "gpo_llm_request_latency_seconds"}


def llm_usage_listener(context: MetricsContext | None, *, role: str) -> LLMUsageMetrics | None:
    """A listener for one role's counters in this process, or None when metrics are off."""
    metrics = metrics_for(context, role=role)
    return None if isinstance(metrics, NullMetrics) else LLMUsageMetrics(metrics)
