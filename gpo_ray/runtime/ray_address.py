"""Is there a Ray head at the address a run is told to join? Asked before `ray.init`, answered within seconds.

Ray's own client retries an address for minutes when nothing answers there, or when something other than Ray
does (a web server, the dashboard's port), printing C++ warnings on stderr all the while; a `ray://` address
times out after half a minute. So before joining, `check_ray_address` resolves the host (with a deadline: a
broken resolver can stall for long), opens a TCP connection, and checks that the other side speaks gRPC (it
answers the HTTP/2 connection preface with a SETTINGS frame), as Ray's GCS and its client server both do.
A mistyped address is the user's input to correct: `ClusterUnreachable` is an input error (exit 2).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

from gpo_ray.errors import InputError

# The HTTP/2 client connection preface and an empty SETTINGS frame: a gRPC server answers with its SETTINGS.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_FRAME_HEADER_BYTES = 9
_SETTINGS_FRAME = 0x04
# Addresses Ray resolves itself, with an error of its own at once ("local" starts a cluster).
_RAY_KEYWORDS = frozenset({"local", "auto"})


class ClusterUnreachable(InputError):
    """No Ray head answers at the address given (a typo, a stopped head, a port that is something else)."""


def ray_address_parts(target: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` or `ray://HOST:PORT` address; None for what Ray resolves itself ("local",
    "auto", another scheme, which ray.init rejects at once)."""
    if target in _RAY_KEYWORDS:
        return None
    if "://" in target:
        if not target.startswith("ray://"):
            return None
        parts = urlsplit(target)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = None
        host, port_text = parts.hostname or "", str(port or "")
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep:
            return None
        host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClusterUnreachable(f"cannot join the Ray cluster at {target}: not an address of the form HOST:PORT "
                                 "or ray://HOST:PORT")
    return host, int(port_text)


def check_ray_address(target: str, *, source: str, timeout_s: float = 5.0) -> None:
    """Raise `ClusterUnreachable` naming `target`, where it came from (`source`) and what was tried, unless a
    gRPC server answers there. A TLS cluster (RAY_USE_TLS) gets the TCP check only."""
    parts = ray_address_parts(target)
    if parts is None:
        return
    host, port = parts

    def unreachable(what: str, hint: str = "is its head node running (`ray start --head`)?") -> ClusterUnreachable:
        return ClusterUnreachable(f"cannot join the Ray cluster at {target} (from {source}): {what}; {hint}")

    addresses = _resolve(host, port, timeout_s=timeout_s)
    if isinstance(addresses, str):
        raise unreachable(f"the host name {host!r} does not resolve ({addresses})", "is the address mistyped?")
    errors: list[str] = []
    for family, sockaddr in addresses:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(sockaddr)
                if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                    return
                if _speaks_grpc(sock):
                    return
                raise unreachable(f"something listens at {host}:{port} but it is not a Ray head (it does not "
                                  "answer as a gRPC server does)", "is it the head's GCS port (default 6379; a ray:// address takes the "
                                  "client port, default 10001)?")
        except OSError as e:
            errors.append(f"TCP connect to {_shown(sockaddr)}: {e.strerror or type(e).__name__}")
    raise unreachable(f"nothing answers there ({'; '.join(errors)})")


def _speaks_grpc(sock: socket.socket) -> bool:
    try:
        sock.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < _FRAME_HEADER_BYTES:
            chunk = sock.recv(_FRAME_HEADER_BYTES - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:
        return False
    return header[3] == _SETTINGS_FRAME


def _resolve(host: str, port: int, *, timeout_s: float) -> list[tuple[int, tuple]] | str:
    """The host's TCP addresses, or the reason there are none. A resolver that does not answer within
    `timeout_s` counts as no answer (its thread is left to finish on its own)."""
    result: list[list[tuple[int, tuple]] | str] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.append([(family, sockaddr) for family, _, _, _, sockaddr in infos])
        except OSError as e:
            result.append(e.strerror or type(e).__name__)

    thread = threading.Thread(target=lookup, name="ray-address-lookup", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return result[0] if result else f"no answer from the resolver within {timeout_s:g}s"


def _shown(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
