"""A real Chroma server for tests (`chroma run`, shipped with chromadb), and a proxy in front of it that checks the
token header.

`ChromaServer` runs `chroma run --path DIR --port N` on loopback, waits until /api/v2/heartbeat answers, and can be
stopped and started again on the same port and directory (a restart: the data stays). At teardown it terminates the
process and waits until the port is free again.

The installed server (chromadb 1.x, the Rust frontend) enforces no token auth of its own (its auth provider is a
no-op), so `TokenCheckingProxy` plays the part of an auth-enabled server or a reverse proxy in front of one: it
answers 401 to a request without `Authorization: Bearer <token>`, forwards the rest, and records the headers seen.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

WAIT_S = 60.0  # a guard against a hung test, never a timing assumption


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def chroma_binary() -> str | None:
    """The `chroma` command of this Python's environment (the venv's), else one on PATH."""
    here = Path(sys.executable).parent / "chroma"
    return str(here) if here.exists() else shutil.which("chroma")


class ChromaServer:
    """`chroma run` on 127.0.0.1:`port` with its data in `path`."""

    def __init__(self, path: Path, *, port: int | None = None) -> None:
        binary = chroma_binary()
        if binary is None:
            raise RuntimeError("no `chroma` command next to this Python or on PATH (pip install chromadb)")
        self.binary = binary
        self.path = Path(path)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = self.path.parent / f"{self.path.name}-server.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def heartbeat(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self) -> ChromaServer:
        assert self.process is None, "already running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "run", "--path", str(self.path), "--host", self.host, "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + WAIT_S
        while not self.heartbeat():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"chroma run did not come up on port {self.port}:\n{tail}")
            time.sleep(0.1)
        self.starts += 1
        return self

    def stop(self) -> None:
        """Terminate the server and wait until it is gone and its port is free."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "host", "content-length"}


class TokenCheckingProxy:
    """Loopback HTTP proxy to a Chroma server that admits only requests carrying `Authorization: Bearer <token>`
    and records the Authorization header of every request (None when absent)."""

    def __init__(self, upstream_port: int, *, token: str) -> None:
        self.upstream_port = upstream_port
        self.token = token
        self.seen: list[str | None] = []
        self.refused = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                auth = self.headers.get("Authorization")
                proxy.seen.append(auth)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if auth != f"Bearer {proxy.token}":
                    proxy.refused += 1
                    self._reply(401, {"content-type": "application/json"},
                                b'{"error":"Unauthorized","message":"a valid token is required"}')
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=WAIT_S)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self._reply(response.status, {k: v for k, v in response.getheaders()
                                                  if k.lower() not in _HOP_BY_HOP}, payload)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="chroma-token-proxy", daemon=True)

    def __enter__(self) -> TokenCheckingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT_S)
