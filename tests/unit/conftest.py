"""tests/unit starts no Ray: a unit test that uses the session's cluster or is marked `ray` fails before any fixture is
set up, naming itself; such a test belongs in tests/integration. (A unit test is therefore never marked `ray`, so the
guard of tests/conftest.py applies to each: one that calls `ray.init` or starts a Ray node, also in a child process,
fails too.)"""

from __future__ import annotations

import pytest

MOVE = "unit tests start no Ray: move it to tests/integration (marked `ray`)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the fixtures, so the session's Ray cluster is never started for a unit test."""
    if "ray_cluster" in getattr(item, "fixturenames", ()):
        pytest.fail(f"{item.nodeid} uses the ray_cluster fixture; {MOVE}", pytrace=False)
    if item.get_closest_marker("ray") is not None:
        pytest.fail(f"{item.nodeid} is marked `ray`; {MOVE}", pytrace=False)
