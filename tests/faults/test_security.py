"""Secrets and exposure: an API key never reaches a log, checkpoint, cache, report, exception or the terminal;
the embedded model server and the fake endpoint listen on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import structlog

from gpo_ray.cli import main
from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm import local_server
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.errors import LLMError
from gpo_ray.llm.protocol import ChatRequest, user_message
from gpo_ray.llm.stack import build_client
from gpo_ray.logs import configure_logging
from gpo_ray.testing import FakeLLMServer

from tests.faults.harness import FaultFake, fake_llm_config, run_config

KEY_ENV = "GPO_FAULT_SUITE_API_KEY"


def files_holding(secret: str, *roots: Path) -> list[str]:
    """Every file under the roots whose bytes contain the secret (text, sqlite, Chroma's binaries alike)."""
    needle = secret.encode()
    return [str(p) for root in roots for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.ray
def test_the_api_key_is_nowhere_after_a_run(tmp_path, monkeypatch):
    """A user's run, in its own process with its own Ray cluster (Ray workers take the key from their environment).

    Afterwards the key is in no file of the run directory, no log of the Ray session and no output.
    """
    key = f"gpo-test-key-{uuid.uuid4().hex}"  # not "sk-" shaped, so pattern scrubbing cannot hide a leak
    monkeypatch.setenv(KEY_ENV, key)
    ray_tmp = Path(tempfile.mkdtemp(prefix="gk", dir="/tmp"))  # short: Ray's socket paths have a length limit
    try:
        with FaultFake(fake_llm_config(api_key_env=KEY_ENV)) as fake:
            config = run_config(tmp_path / "run", optimizer_url=fake.base_url, task_url=fake.base_url,
                                api_key_env=KEY_ENV)
            cfg_file = tmp_path / "run.yaml"
            cfg_file.write_text(json.dumps(config.public_dict()))
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(ray_tmp)}
            proc = subprocess.run(
                [sys.executable, "-m", "gpo_ray", "optimize", str(cfg_file), "--json-logs", "--address", "local"],
                capture_output=True, text=True, env=env, timeout=300,
            )
            stats = fake.stats()
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert stats["requests"] > 0 and "401" not in stats["status"], "the endpoint got (and checked) the key"
        assert (config.run_dir / "cache").is_dir() and (config.run_dir / "chroma").is_dir()
        assert list((ray_tmp / "ray").glob("session_*/logs/*")), "the Ray session's logs were found"

        assert key not in proc.stdout and key not in proc.stderr
        assert files_holding(key, config.run_dir) == []
        assert files_holding(key, ray_tmp) == []
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


def test_a_rejected_key_appears_in_no_error_or_log(tmp_path, monkeypatch):
    """The endpoint refuses the key and quotes part of it back (as OpenAI does): none of it may travel on."""
    right, wrong = f"right-key-{uuid.uuid4().hex}", f"wrongkey-{uuid.uuid4().hex}"
    log_file = tmp_path / "driver.jsonl"
    stderr = io.StringIO()

    async def attempt(base_url: str) -> LLMError:
        role = LLMRoleConfig(base_url=base_url, model="fake-llm", api_key_env=KEY_ENV, max_retries=2)
        client = build_client(role, role_name="task_model", base_url=base_url, model="fake-llm", cache=None,
                              counters=UsageCounters())
        with pytest.raises(LLMError) as e:
            await client.complete(ChatRequest(messages=user_message("What is 2 + 2?")))
        return e.value

    monkeypatch.setenv(KEY_ENV, right)
    with FaultFake(fake_llm_config(api_key_env=KEY_ENV)) as fake, contextlib.redirect_stderr(stderr):
        configure_logging(mode="json", log_file=log_file)  # no redaction: nothing may put the key there at all
        monkeypatch.setenv(KEY_ENV, wrong)  # the client reads it now; the fake wants the right one
        error = asyncio.run(attempt(fake.base_url))
        assert fake.stats()["status"] == {"401": 1}, "refused once, not retried"

    shown = [str(error), repr(error), *(str(a) for a in error.args)]
    assert "authentication failed" in str(error) and KEY_ENV in str(error)
    for text in [*shown, stderr.getvalue(), log_file.read_text()]:
        assert wrong not in text and wrong[:12] not in text and right not in text, text


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_fake_endpoint_is_reachable_on_loopback_only():
    address = non_loopback_address()
    with FaultFake() as fake:
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5):
            pass
        if address is None:
            pytest.skip("this machine has no non-loopback address to try")
        with pytest.raises(OSError), socket.create_connection((address, fake.port), timeout=5):
            pass


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.2", "example.com", "127.0.0.1.nip.io"])
def test_the_fake_endpoint_refuses_a_non_loopback_host(host, capsys):
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(FakeLLMServer().start(host=host))
    assert main(["fake-llm", "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loopback" in err and "Traceback" not in err, err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.2", "example.com", "127.0.0.1.nip.io", ""])
def test_the_embedded_model_server_refuses_a_non_loopback_host(host):
    with pytest.raises(local_server.InputError, match="loopback"):
        local_server.LocalModelServer(host=host)


def test_the_embedded_model_server_is_started_on_loopback():
    for host in ("127.0.0.1", "::1", "localhost"):
        command = local_server.LocalModelServer(host=host)._command(Path("model.gguf"), 8080)
        assert command[command.index("--host") + 1] == host
    default = local_server.LocalModelServer()._command(Path("model.gguf"), 8080)
    assert default[default.index("--host") + 1] == "127.0.0.1"
    with pytest.raises(SystemExit):  # `serve-local` has no way to choose another host
        with contextlib.redirect_stderr(io.StringIO()):
            main(["serve-local", "--host", "0.0.0.0"])


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("source", ["RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "default-file"])
def test_the_ray_cluster_token_is_masked_in_the_run_log(tmp_path, monkeypatch, source):
    """The Ray cluster's token (token authentication), wherever the driver takes it from, is masked in the run's
    log and on the console like an API key. (tests/integration/test_ray_token_auth.py runs against a cluster
    with a token and finds it in no file of the run and no output.)"""
    from gpo_ray.api import setup_logs

    token = f"ray-token-{uuid.uuid4().hex}"
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if source == "RAY_AUTH_TOKEN":
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    elif source == "RAY_AUTH_TOKEN_PATH":
        (tmp_path / "token").write_text(token + "\n")
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    else:
        (tmp_path / "home" / ".ray").mkdir(parents=True)
        (tmp_path / "home" / ".ray" / "auth_token").write_text(token)
    config = run_config(tmp_path / "run", optimizer_url="http://127.0.0.1:9/v1", task_url="http://127.0.0.1:9/v1",
                        api_key_env=KEY_ENV)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        setup_logs(config, tmp_path / "logs", "json")
        structlog.get_logger().warning("ray_said", detail=f"Authorization: Bearer {token}")
    log = (tmp_path / "logs" / "driver.jsonl").read_text()
    assert "Bearer ***" in log
    assert token not in log and token not in stderr.getvalue()
