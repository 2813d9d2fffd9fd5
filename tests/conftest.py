"""Shared fixtures: one real local Ray cluster per test session, the shared dataset path."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# A suite started in the background by a non-interactive shell (`cmd &`: a CI script, `nohup`) has SIGINT ignored,
# and every child would inherit that: the tests that stop a child with Ctrl-C (a run, `serve-local`, the fake
# endpoint) then hang. A handler of our own is not inherited across exec, so the children get the default, as from
# a terminal; and the suite itself can be interrupted again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "gpo"


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
        ray.init(
            address="local",  # a new cluster, never one that happens to run on the machine
            num_cpus=4,  # logical CPUs: I/O-bound actors take fractions of these
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
        )
    yield ray
    ray.shutdown()
