"""RunSession without Ray (its Ray session, actors and metrics replaced by recorders): in a warm start only the start
thread joins Ray, once, and the driver makes no Ray metric until that thread has Ray up (the race a sweep's warm
start met); leaving the block stops the actors, then Ray, then the endpoints; a Ctrl-C in the block becomes
RunInterrupted with the resume hint after that teardown."""

from __future__ import annotations

import contextlib
import threading

import pytest

from gpo_ray.config import RunConfig
from gpo_ray.controller import warm_start
from gpo_ray.errors import RunInterrupted
from gpo_ray.launch import RunActors, RunSession
from gpo_ray.launch import session as session_module
from gpo_ray.launch.endpoints import endpoints_for
from gpo_ray.observability.metrics import NullMetrics

URL = "http://127.0.0.1:9/v1"  # never asked: the block runs no controller


def config() -> RunConfig:
    return RunConfig(tasks=["example/arithmetic"], task_model={"base_url": URL}, optimizer_model={"base_url": URL})


class Recorder:
    """Stands in for the session's Ray session, actor start, actor kill, metrics and endpoints; `events` in order,
    each with the thread it happened on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_ray: threading.Event | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        self.hold_ray = hold_ray
        monkeypatch.setattr(session_module, "ray_session", self.ray_session)
        monkeypatch.setattr(session_module, "start_actors", self.start_actors)
        monkeypatch.setattr(session_module, "kill_actors", self.kill_actors)
        monkeypatch.setattr(session_module, "endpoints_for", self.endpoints_for)
        monkeypatch.setattr(session_module, "metrics_for", self.metrics_for)
        monkeypatch.setattr(warm_start, "metrics_for", self.metrics_for)

    def note(self, what: str) -> None:
        self.events.append((what, threading.current_thread().name))

    @contextlib.contextmanager
    def ray_session(self, address, *, output):
        self.note("ray_joined")
        if self.hold_ray is not None:
            assert self.hold_ray.wait(30), "the test never let Ray come up"
        try:
            yield False
        finally:
            self.note("ray_shutdown")

    def start_actors(self, *_args, **_kwargs) -> RunActors:
        self.note("actors_started")
        return RunActors("memory", ["refiner"], ["evaluator"], memory_shards=["memory"], memory_router="router")

    def kill_actors(self, handles) -> None:
        self.note(f"actors_killed:{len(handles)}")

    @contextlib.contextmanager
    def endpoints_for(self, config, *, log_dir):
        with endpoints_for(config, log_dir=log_dir) as endpoints:
            yield endpoints
        self.note("endpoints_stopped")

    def metrics_for(self, context, **tags):
        self.note("ray_metric_made")
        return NullMetrics()

    def named(self, what: str) -> list[str]:
        return [thread for event, thread in self.events if event == what]


def session_of(tmp_path, **options) -> RunSession:
    return RunSession(config(), home=tmp_path, cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs", tasks=1,
                      output="quiet", **options)


def test_a_warm_start_joins_ray_once_on_its_thread_and_the_driver_makes_no_metric_before(monkeypatch, tmp_path):
    hold_ray = threading.Event()
    recorder = Recorder(monkeypatch, hold_ray=hold_ray)
    actors_up = threading.Event()
    with session_of(tmp_path, warm_start=True, on_actors_started=lambda _actors: actors_up.set()) as session:
        early = session.metrics(None)  # the driver's metrics while the thread may be inside ray.init
        assert recorder.named("ray_metric_made") == [], "a Ray metric was made before Ray was up"
        hold_ray.set()
        assert actors_up.wait(30)
        late = session.metrics(None)  # Ray is up: made at once
        assert early is not late
    assert recorder.named("ray_joined") == ["gpo-ray-start"], "Ray joined other than once, on the start thread"
    made = [i for i, (event, _) in enumerate(recorder.events) if event == "ray_metric_made"]
    assert len(made) >= 2 and min(made) > recorder.events.index(("ray_joined", "gpo-ray-start"))
    assert recorder.named("ray_shutdown") == ["gpo-ray-start"], "Ray's shutdown is on the thread that started it"


def test_leaving_a_session_stops_the_actors_then_ray_then_the_endpoints(monkeypatch, tmp_path):
    recorder = Recorder(monkeypatch)
    with session_of(tmp_path, warm_start=False) as session:
        assert session.refiners == ["refiner"] and session.evaluators == ["evaluator"]
    assert [event for event, _ in recorder.events] == [
        "ray_joined", "actors_started", "actors_killed:3", "ray_shutdown", "endpoints_stopped"]


def test_a_ctrl_c_in_a_session_is_run_interrupted_with_the_resume_hint_after_the_teardown(monkeypatch, tmp_path):
    recorder = Recorder(monkeypatch)
    with pytest.raises(RunInterrupted) as interrupted, session_of(tmp_path, warm_start=False):
        raise KeyboardInterrupt
    assert str(interrupted.value) == f"completed steps are saved, `gpo-ray resume {tmp_path}` continues"
    assert [event for event, _ in recorder.events][-2:] == ["ray_shutdown", "endpoints_stopped"]
