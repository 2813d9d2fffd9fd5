"""Shared fixtures: one real local Ray cluster per test session, the shared dataset path; the markers that say what a
test needs, and a guard that fails a test which starts Ray without saying so.

Markers (declared in pyproject.toml):
- `ray`: needs Ray. Added here to every test that uses the session's cluster (the `ray_cluster` fixture, also through
  another fixture); written on the tests that start a Ray of their own (a CLI run in a child process, `ray start`).
  A test without it that calls `ray.init` or starts a Ray node, also in a child process, fails (`_ray_only_when_marked`).
- `model`: runs the real embedded model (SmolLM2 on llama.cpp); written on the test, implies `slow`.
- `multinode`: starts a multi-node Ray cluster on this machine (ray.cluster_utils.Cluster: tests/multinode_run.py,
  tests/multinode_metric_run.py); written on the test, implies `slow` and `ray`.
- `slow`: minutes, not seconds; implied by `model` and `multinode`, written on a few others.
tests/unit/test_markers.py checks these against the tests' sources.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

# A suite started in the background by a non-interactive shell (`cmd &`: a CI script, `nohup`) has SIGINT ignored,
# and every child would inherit that: the tests that stop a child with Ctrl-C (a run, `serve-local`, the fake
# endpoint) then hang. A handler of our own is not inherited across exec, so the children get the default, as from
# a terminal; and the suite itself can be interrupted again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "gpo"
UNIT = Path(__file__).resolve().parent / "unit"

# A marker written on a test -> the markers it implies.
IMPLIED = {"model": ("slow",), "multinode": ("slow", "ray")}

pytest_plugins = ["tests.parallel_order"]  # the order parallel workers take the tests in


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.ray)
        for marker, implied in IMPLIED.items():
            if item.get_closest_marker(marker) is not None:
                for name in implied:
                    if item.get_closest_marker(name) is None:
                        item.add_marker(name)


def _advice(item: pytest.Item) -> str:
    if item.path.is_relative_to(UNIT):
        return "unit tests start no Ray: move it to tests/integration (marked `ray`)"
    return "mark it `ray` (pytest.mark.ray)"


@pytest.fixture(autouse=True)
def _ray_only_when_marked(request: pytest.FixtureRequest):
    """A test not marked `ray` starts no Ray: `ray.init` raises (and fails the test even when the code under test
    swallowed that), and a Ray node started any other way, also by a child process that inherits the environment,
    leaves a `session_*` folder in the test's own empty RAY_TMPDIR, which fails the test. With that folder empty, a
    child's `address="auto"` finds no cluster to join either."""
    if request.node.get_closest_marker("ray") is not None:
        yield
        return
    import ray

    test, advice = request.node.nodeid, _advice(request.node)
    calls: list[str] = []

    def refuse_init(*args, **kwargs):
        calls.append(f"ray.init(address={kwargs.get('address', args[0] if args else None)!r})")
        raise RuntimeError(f"{test} called ray.init but is not marked `ray`; {advice}")

    # Short, under /tmp: Ray's socket paths inside it must stay below the 107 characters of a Unix socket path.
    temp_dir = Path(tempfile.mkdtemp(prefix="gpo-no-ray-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray, "init", refuse_init)
        patch.setenv("RAY_TMPDIR", str(temp_dir))
        try:
            yield
            sessions = sorted(p.name for p in (temp_dir / "ray").glob("session_*"))
            if calls:
                pytest.fail(f"{test} called {calls[0]} but is not marked `ray`; {advice}", pytrace=False)
            if sessions:
                pytest.fail(f"{test} started Ray ({sessions[0]}, maybe in a child process) but is not marked `ray`; "
                            f"{advice}", pytrace=False)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The paper's benchmarks beside the checkout; tests needing them skip clearly without."""
    override = os.environ.get("GPO_SHARED_DATA")
    path = Path(override) if override else SHARED_DATA
    if not (path / "BIG-Bench-Hard").is_dir():
        pytest.skip(f"shared GPO datasets not found at {path} (set GPO_SHARED_DATA to point at them)")
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by every test in the session (local mode is gone from Ray)."""
    import ray

    if not ray.is_initialized():
        # In the environment the workers inherit, not a runtime_env: with one, Ray starts every worker through a
        # setup process of its own (one more Python start per actor, in every run of the suite).
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        ray.init(
            address="local",  # a new cluster, never one that happens to run on the machine
            num_cpus=4,  # logical CPUs: I/O-bound actors take fractions of these
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        # What a run does to a cluster it starts (runtime/local_cluster.py): the log monitor, the autoscaler monitor
        # and the dashboard's API server serve nothing here (no driver output, no autoscaling, no dashboard), and the
        # log monitor tails every worker's log: about 4% of the parallel phase's CPU. The metrics agent stays.
        from gpo_ray.runtime.local_cluster import stop_unused_daemons

        stop_unused_daemons()
    yield ray
    ray.shutdown()
