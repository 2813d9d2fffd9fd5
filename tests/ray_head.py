"""A Ray head of a test's own (`ray start --head --block`), beside the session's shared cluster: its own ports,
started in a new process group and stopped by it, so nothing of the shared cluster is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def own_ray_head(*, port: int, env: dict[str, str], ready: Callable[[], bool], options: tuple[str, ...] = (),
                 timeout_s: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """The head's process, once `ready()` says it answers; stopped (SIGTERM to its group, then SIGKILL) on exit."""
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--disable-usage-stats", *options,
         # Its own agent ports: the test session's cluster on this machine holds the default ones.
         "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
         "--ray-client-server-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert head.poll() is None, head.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(1)
        yield head
    finally:
        # Only this head: its `ray start --block` process group (it stops its own Ray processes on SIGTERM).
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # a daemon of the group that outlived `ray start`
