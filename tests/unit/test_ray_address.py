"""The check before joining a Ray cluster: a gRPC server answering at HOST:PORT passes; a closed port, a host that
does not resolve, or a port where something else listens is a one-line input error naming what was tried."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gpo_ray.errors import InputError
from gpo_ray.runtime.ray_address import ClusterUnreachable, check_ray_address, ray_address_parts


@contextlib.contextmanager
def listener(reply: bytes) -> Iterator[int]:
    """A loopback server that answers every connection with `reply` (after reading what the client sends)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(64)
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GRPC_SETTINGS = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00" + b"\x00" * 24  # what Ray's GCS answers the preface with


def test_a_grpc_server_passes_on_both_address_forms():
    with listener(GRPC_SETTINGS) as port:
        check_ray_address(f"127.0.0.1:{port}", source="--address")
        check_ray_address(f"ray://127.0.0.1:{port}", source="--address")


def test_a_closed_port_names_the_address_its_source_and_the_connect_tried():
    port = closed_port()
    with pytest.raises(ClusterUnreachable) as e:
        check_ray_address(f"localhost:{port}", source="the RAY_ADDRESS environment variable")
    message = str(e.value)
    assert message.startswith(f"cannot join the Ray cluster at localhost:{port} (from the RAY_ADDRESS environment")
    assert f"TCP connect to 127.0.0.1:{port}" in message and "\n" not in message
    assert isinstance(e.value, InputError) and e.value.exit_code == 2


def test_something_else_listening_is_not_taken_for_a_ray_head():
    with listener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port, pytest.raises(ClusterUnreachable, match="not a Ray head"):
        check_ray_address(f"127.0.0.1:{port}", source="--address")


def test_a_host_name_that_does_not_resolve():
    with pytest.raises(ClusterUnreachable, match="'no-such-head.invalid' does not resolve"):
        check_ray_address("ray://no-such-head.invalid:10001", source="--address")


@pytest.mark.parametrize("target", ["local", "auto", "http://127.0.0.1:8265", "head"])
def test_what_ray_resolves_itself_is_left_to_it(target):
    assert ray_address_parts(target) is None


@pytest.mark.parametrize("target", ["head:port", "head:0", "ray://head", "ray://head:99999", ":6379"])
def test_a_malformed_address_is_an_input_error(target):
    with pytest.raises(ClusterUnreachable, match="HOST:PORT"):
        ray_address_parts(target)
