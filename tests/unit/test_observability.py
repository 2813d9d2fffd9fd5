"""The observability facade without a cluster: what the metrics listener sees matches the usage counters, metrics
are a no-op when off, every catalogued series records through Ray's API, run timing adds up over invocations,
and the tracking switch refuses, at the edge, an MLflow that is asked for and missing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.controller.controller import RunClock
from gpo_ray.controller.pools import EvaluatorPool, RefinerPool
from gpo_ray.errors import ConfigError
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.balance import BalancedClient, public_url
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.llm.errors import RetryableLLMError
from gpo_ray.llm.health import HealthPolicy
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, user_message
from gpo_ray.llm.retry import RetryingClient
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.observability import tracking
from gpo_ray.observability.metrics import (
    CATALOG,
    LLMUsageMetrics,
    MetricsContext,
    NullMetrics,
    RayMetrics,
    metrics_for,
)
from gpo_ray.observability.mlflow_tracking import one_line_error
from gpo_ray.observability.tracking import NullTracker, check_tracking, mlflow_wanted, open_tracker
from gpo_ray.tasks.types import Example
from gpo_ray.testing import FakeLLMConfig, running_fake_llm
from gpo_ray.vocabulary import MetricKind


class RecordingMetrics:
    """A Metrics facade that remembers what it was told, summed per (name, tags)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.observations: Counter = Counter()
        self.gauges: dict[tuple, list[float]] = {}

    def inc(self, name, value=1.0, **tags):
        self.counts[(name, tuple(sorted(tags.items())))] += value

    def set(self, name, value, **tags):
        self.gauges.setdefault((name, tuple(sorted(tags.items()))), []).append(value)

    def observe(self, name, value, **tags):
        assert value >= 0
        self.observations[name] += 1


async def test_the_metrics_listener_sees_exactly_what_the_usage_counters_count(tmp_path):
    metrics = RecordingMetrics()
    counters = UsageCounters(listener=LLMUsageMetrics(metrics))
    role = LLMRoleConfig(base_url="http://set-at-run-time", model="fake-model", max_retries=8, max_in_flight=4)
    async with running_fake_llm(FakeLLMConfig(retry_after_s=0.0, error_rate_500=0.2)) as server:
        client = build_client(role, role_name="task_model", base_url=server.base_url, model="fake-model",
                              cache=ResponseCache(tmp_path), counters=counters, base_delay_s=0.001)
        try:
            asks = [f"What is {i} * 3?" + (" [[fault:once:429]]" if i % 4 == 0 else "") for i in range(16)]
            await asyncio.gather(*(client.complete(ChatRequest(messages=user_message(q), seed=1)) for q in asks))
            await asyncio.gather(*(client.complete(ChatRequest(messages=user_message(q), seed=1)) for q in asks[:5]))
        finally:
            await close_client(client)

    snap = counters.snapshot()
    assert snap["errors"] and snap["retries"] and snap["cache_hits"] == 5  # the run exercised every counter
    assert metrics.counts[("gpo_llm_calls_total", ())] == snap["calls"] == 21
    assert metrics.counts[("gpo_llm_requests_total", ())] == snap["requests"] == server.stats()["requests"]
    assert metrics.counts[("gpo_llm_cache_hits_total", ())] == snap["cache_hits"]
    assert metrics.counts[("gpo_llm_retries_total", ())] == snap["retries"]
    assert metrics.counts[("gpo_llm_tokens_total", (("kind", "prompt"),))] == snap["prompt_tokens"]
    assert metrics.counts[("gpo_llm_tokens_total", (("kind", "completion"),))] == snap["completion_tokens"]
    for kind, n in snap["errors"].items():
        assert metrics.counts[("gpo_llm_errors_total", (("kind", kind),))] == n
    assert metrics.observations["gpo_llm_request_latency_seconds"] == snap["requests"]
    assert metrics.observations["gpo_llm_call_latency_seconds"] == snap["calls"] - snap["cache_hits"]


class SwitchableEndpoint:
    """An endpoint in-process that answers, or while `down` refuses connections as a stopped server does."""

    def __init__(self) -> None:
        self.down = False

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.down:
            error = RetryableLLMError("connection failed (ClientConnectorError)")
            error.kind = "connection"
            raise error
        return ChatResponse("ok")


async def test_endpoint_series_follow_a_dead_endpoint_out_and_back_in_without_its_credentials():
    now = [0.0]
    flaky, steady = SwitchableEndpoint(), SwitchableEndpoint()
    urls = ["https://user:sk-secret@gpu-1.example:8000/v1?key=sk-2", "http://gpu-2.example:8000/v1"]
    metrics = RecordingMetrics()
    counters = UsageCounters(listener=LLMUsageMetrics(metrics, flush_interval_s=0.0))
    balanced = BalancedClient([flaky, steady], endpoints=urls, counters=counters, clock=lambda: now[0],
                              policy=HealthPolicy(threshold=1, base_ejection_s=5.0))
    client = RetryingClient(balanced, max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    for i in range(4):
        await client.complete(ChatRequest(user_message(f"before {i}")))
    flaky.down = True
    for i in range(4):
        await client.complete(ChatRequest(user_message(f"down {i}")))
    flaky.down, now[0] = False, 6.0  # back, and its ejection is over: the next request to it is a probe
    for i in range(4):
        await client.complete(ChatRequest(user_message(f"after {i}")))

    snap = counters.snapshot()
    first, second = public_url(urls[0]), public_url(urls[1])
    assert snap["ejections"] == {first: 1}
    for url in (first, second):
        assert metrics.counts[("gpo_llm_endpoint_requests_total", (("endpoint", url),))] == snap["endpoints"][url]
    assert metrics.counts[("gpo_llm_endpoint_ejections_total", (("endpoint", first),))] == 1
    assert changes(metrics.gauges[("gpo_llm_endpoint_up", (("endpoint", first),))]) == [1.0, 0.0, 1.0]  # up, out, back
    # The steady one never changed state, and its gauge is still set at every flush (Ray drops a gauge set only once).
    assert changes(metrics.gauges[("gpo_llm_endpoint_up", (("endpoint", second),))]) == [1.0]
    assert len(metrics.gauges[("gpo_llm_endpoint_up", (("endpoint", second),))]) > 3
    assert not any("sk-" in str(key) for key in [*metrics.counts, *metrics.gauges])


def changes(values: list[float]) -> list[float]:
    """The values with repeats in a row dropped: the states a gauge went through."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


async def test_a_listener_attached_after_the_balancer_hears_every_endpoint_state():
    """The warm start's driver clients get their listener after construction, when the balancer has already told
    the endpoints' first states: `attach` replays them, so an endpoint that never changes state still has a series."""
    urls = ["http://gpu-1.example:8000/v1", "http://gpu-2.example:8000/v1"]
    counters = UsageCounters()
    balanced = BalancedClient([SwitchableEndpoint(), SwitchableEndpoint()], endpoints=urls, counters=counters)
    metrics = RecordingMetrics()
    counters.attach(LLMUsageMetrics(metrics, flush_interval_s=0.0))
    await balanced.complete(ChatRequest(user_message("one")))
    for url in urls:
        assert metrics.gauges[("gpo_llm_endpoint_up", (("endpoint", public_url(url)),))][-1] == 1.0


def test_metrics_are_a_no_op_when_off_or_outside_a_ray_cluster(monkeypatch):
    assert isinstance(metrics_for(None), NullMetrics)
    assert isinstance(metrics_for(MetricsContext(run="r", enabled=False)), NullMetrics)
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert isinstance(metrics_for(MetricsContext(run="r")), NullMetrics)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    assert isinstance(metrics_for(MetricsContext(run="r"), role="optimizer"), RayMetrics)


def test_every_catalogued_series_records_through_rays_metrics_api():
    """Ray refuses a tag that is not among a metric's tag keys, or a missing one: record each as the code does."""
    per_kind_tags = {"gpo_llm_tokens_total": {"kind": "prompt"}, "gpo_llm_errors_total": {"kind": "rate_limited"},
                     "gpo_queue_depth": {"pool": "evaluator"}, "gpo_tracking_errors_total": {"backend": "mlflow"},
                     **{name: {"endpoint": "http://gpu-1.example:8000/v1"} for name in CATALOG if "endpoint" in name}}
    llm = RayMetrics({"run": "unit-test", "role": "optimizer"})
    driver = RayMetrics({"run": "unit-test"})
    with capture_logs() as logs:
        for name, spec in CATALOG.items():
            assert name.startswith("gpo_") and spec.description
            facade = llm if "role" in spec.tag_keys else driver
            tags = dict(per_kind_tags.get(name, {}))
            if "task" in spec.tag_keys:
                tags["task"] = "bbh/navigate"
            record = {"counter": facade.inc, "gauge": facade.set, "histogram": facade.observe}[spec.kind]
            record(name, 1.0, **tags)
    assert [e for e in logs if e["event"] == "metric_record_failed"] == []
    assert set(llm._objects) | set(driver._objects) == set(CATALOG)  # each was made, once, in this process


async def test_pools_report_their_outstanding_work_and_drain_to_zero():
    class Remote:
        def __init__(self, fn):
            self.remote = fn

    class Evaluator:
        def __init__(self):
            async def score(chunk):
                await asyncio.sleep(0)
                return [1.0] * len(chunk)

            self.score = Remote(score)

    class Refiner:
        def __init__(self):
            async def generate(request):
                await asyncio.sleep(0)
                return "generated"

            self.generate = Remote(generate)

    metrics = RecordingMetrics()
    evaluators = EvaluatorPool([Evaluator(), Evaluator()], chunk_size=2, metrics=metrics)
    refiners = RefinerPool([Refiner()], metrics=metrics)
    examples = [Example(input=f"q{i}", answers=("a",)) for i in range(3)]
    try:
        scores = await evaluators.score("t", MetricKind.EXACT_MATCH, ["p1", "p2"], examples)
        await asyncio.gather(refiners.generate(object()), refiners.generate(object()))
    finally:
        await evaluators.close()
    assert scores == [[1.0] * 3, [1.0] * 3]
    assert metrics.gauges[("gpo_queue_depth", (("pool", "evaluator"),))] == [6, 0]
    refiner_depths = metrics.gauges[("gpo_queue_depth", (("pool", "refiner"),))]
    assert max(refiner_depths) == 2 and refiner_depths[-1] == 0


def test_run_timing_adds_a_resumed_invocation_to_the_earlier_ones():
    first = RunClock().timing()
    started = datetime.fromisoformat(first["started_at"].replace("Z", "+00:00"))
    assert started.tzinfo is not None and abs(datetime.now(timezone.utc) - started) < timedelta(minutes=1)
    assert 0 <= first["wall_time_s"] < 60

    earlier = {"started_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T04:00:00Z", "wall_time_s": 3600.5}
    resumed = RunClock(earlier).timing()
    assert resumed["started_at"] == "2024-01-02T03:04:05Z"  # the run's start, not this invocation's
    assert 3600.5 <= resumed["wall_time_s"] < 3600.5 + 60
    assert datetime.fromisoformat(resumed["updated_at"].replace("Z", "+00:00")) > started - timedelta(seconds=1)
    assert RunClock({"wall_time_s": "garbage"}).timing()["wall_time_s"] < 60  # a damaged file starts from zero


def config(**tracking_settings) -> RunConfig:
    return RunConfig(tasks=["example/arithmetic"], tracking=tracking_settings)


def test_mlflow_switch(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking, "mlflow_installed", lambda: True)
    assert mlflow_wanted(config(mlflow=True).tracking)
    assert not mlflow_wanted(config(mlflow=False, mlflow_tracking_uri="file:///x").tracking)
    assert not mlflow_wanted(config().tracking), "auto needs a tracking URI"
    assert mlflow_wanted(config(mlflow_tracking_uri="file:///x").tracking)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert mlflow_wanted(config().tracking)

    monkeypatch.setattr(tracking, "mlflow_installed", lambda: False)
    assert not mlflow_wanted(config().tracking), "auto stays off without mlflow"
    with pytest.raises(ConfigError) as info:
        check_tracking(config(mlflow=True))
    assert "mlflow" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(open_tracker(config(mlflow=False), run_path=None), NullTracker)


def test_tracker_errors_in_logs_never_show_url_credentials():
    err = ConnectionError("API request to https://alice:s3cret@mlflow.example/api/2.0 failed\nmore")
    assert one_line_error(err) == "ConnectionError: API request to https://***@mlflow.example/api/2.0 failed"
