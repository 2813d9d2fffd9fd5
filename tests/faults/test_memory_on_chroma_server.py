"""The trajectory memory on a real Chroma server (`cluster.chroma_host`, what a cluster deployment uses), compared
with the embedded store of the undisturbed run (tests/faults/conftest.py): a run, a resume after the driver was
killed, the memory actor killed, the server restarted mid-run, and the token header when `chroma_token_env` is set.

The server is `chroma run` (shipped with chromadb), started by a fixture like the fake endpoint (tests/chroma_server.py).
Runs sharing it never see each other's records: each run has its own collection (`gpo-run-<run id>`).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import ray

from gpo_ray.api import optimize, resume
from gpo_ray.config import RunConfig
from gpo_ray.memory.store import open_chroma_client
from gpo_ray.runtime.processes import process_alive
from tests.chroma_server import ChromaServer, TokenCheckingProxy, chroma_binary
from tests.faults.harness import (
    CANDIDATES,
    TASK,
    BackgroundRun,
    StartedActors,
    assert_same_as_undisturbed,
    checkpoint_steps,
    memory_contents,
    run_config,
    two_fakes,
    wait_until,
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_cluster"),
    pytest.mark.skipif(chroma_binary() is None, reason="no `chroma` command (pip install chromadb)"),
]

TOKEN_ENV = "GPO_TEST_CHROMA_TOKEN"


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """One Chroma server for the module's runs (each run has its own collection)."""
    with ChromaServer(tmp_path_factory.mktemp("chroma-server") / "data") as server:
        yield server


def on_server(config: RunConfig, server_port: int, **cluster) -> RunConfig:
    return config.model_copy(update={"cluster": config.cluster.model_copy(
        update={"chroma_host": "127.0.0.1", "chroma_port": server_port} | cluster)})


def server_memory(server: ChromaServer, run_dir: Path) -> dict:
    """What the run left in its collection on the server (the run's collection name, as api.py makes it)."""
    run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    client = open_chroma_client(path=None, host=server.host, port=server.port, token_env=None)
    return memory_contents(None, client=client, collection=f"gpo-run-{run_id}")


def test_a_run_on_a_chroma_server_ends_as_the_embedded_one(chroma_server, tmp_path, undisturbed):
    with two_fakes() as (opt, task):
        config = on_server(run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url),
                           chroma_server.port)
        results = optimize(config)

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert not (config.run_dir / "chroma").exists(), "nothing was stored in the run directory"
    assert server_memory(chroma_server, config.run_dir) == undisturbed.memory


def test_a_killed_driver_resumes_from_the_server(chroma_server, tmp_path, undisturbed):
    """The driver (a `gpo-ray optimize` process on the session's cluster) is SIGKILLed while step 2 is being
    generated; `resume` reads steps 0-1 back from the server and finishes as the undisturbed run."""
    with two_fakes() as (opt, task):
        opt.pause()
        config = on_server(run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url),
                           chroma_server.port)
        cfg_file = tmp_path / "run.json"
        cfg_file.write_text(json.dumps(config.public_dict()))
        driver = subprocess.Popen(
            [sys.executable, "-m", "gpo_ray", "optimize", str(cfg_file), "--quiet",
             "--address", ray.get_runtime_context().gcs_address],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            opt.hold_generation(2)
            assert checkpoint_steps(config.run_dir) == [0, 1]
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(30)
        finally:
            if driver.poll() is None:
                driver.kill()
        opt.resume()
        results = resume(config.run_dir)

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert server_memory(chroma_server, config.run_dir) == undisturbed.memory


def test_the_memory_actor_killed_reopens_the_server_collection(chroma_server, tmp_path, undisturbed):
    with two_fakes() as (opt, task):
        opt.pause()
        config = on_server(run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url),
                           chroma_server.port)
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(3)  # steps 0-2 are in memory; step 3 retrieved from it
        memory = actors.wait().memory
        old_pid = ray.get(memory.pid.remote(), timeout=60)
        ray.kill(memory, no_restart=False)
        wait_until(lambda: not process_alive(old_pid), what="the memory actor's process to end")
        assert ray.get(memory.pid.remote(), timeout=60) != old_pid, "restarted in a new process"
        opt.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert opt_stats["repeated_requests"] == 0 and task_stats["repeated_requests"] == 0
    assert server_memory(chroma_server, config.run_dir) == undisturbed.memory


def test_the_server_restarted_mid_run_is_waited_for_and_nothing_is_lost(tmp_path, undisturbed):
    """The server goes down after step 1; step 2's records cannot be stored until it is back. The memory actor
    tries again (it says how often), the server comes back on the same port and directory, the run ends as the
    undisturbed one and the server holds every step's records."""
    with ChromaServer(tmp_path / "server-data") as server, two_fakes() as (opt, task):
        opt.pause()
        config = on_server(run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url),
                           server.port)
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(2)
        # Steps 0-1 are stored: their writes are not awaited by the steps, and with the warm start they may be made
        # before the memory actor exists (controller/services.py, warm_start.py).
        early = actors.wait().memory
        wait_until(lambda: ray.get(early.last_step.remote(TASK), timeout=60) >= 1, what="steps 0-1 in the memory")
        server.stop()
        opt.resume()  # step 2 is generated and scored; its records wait for the server
        memory = actors.wait().memory
        wait_until(lambda: ray.get(memory.server_retries.remote(), timeout=60) >= 1,
                   what="the memory actor to find the server down")
        # Steps 2 and 3 are checkpointed (the checkpoint comes first) and their records are waiting. Step 3's
        # retrieval is over 3 prompts (retrieval_k): answered without the memory. Step 4's, over 4, needs the
        # memory and waits: step 4 is not generated.
        wait_until(lambda: checkpoint_steps(config.run_dir) == [0, 1, 2, 3], what="steps 2-3 checkpointed")
        assert opt.stats()["requests"] == 3 * CANDIDATES
        server.start()
        results = run.join()
        assert server.starts == 2
        contents = server_memory(server, config.run_dir)

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert contents == undisturbed.memory


def test_the_token_is_sent_on_every_request_when_chroma_token_env_is_set(chroma_server, tmp_path):
    """A user's run, in its own process and Ray cluster (its Ray workers take the token from their environment),
    against a server that admits only `Authorization: Bearer <token>`. Every request to the server carried it;
    without it the server refuses (so the check can fail); the token is in no file of the run."""
    token = f"chroma-token-{uuid.uuid4().hex}"
    with TokenCheckingProxy(chroma_server.port, token=token) as proxy:
        with pytest.raises(Exception, match="(?i)unauthorized|401|token"):  # no token: refused
            open_chroma_client(path=None, host="127.0.0.1", port=proxy.port, token_env=None).heartbeat()
        refused_without_token = proxy.refused
        proxy.seen.clear()

        ray_tmp = Path(tempfile.mkdtemp(prefix="gc", dir="/tmp"))  # short: Ray's socket paths have a length limit
        try:
            with two_fakes() as (opt, task):
                config = on_server(run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url),
                                   proxy.port, chroma_token_env=TOKEN_ENV)
                cfg_file = tmp_path / "run.json"
                cfg_file.write_text(json.dumps(config.public_dict()))
                env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
                    "RAY_TMPDIR": str(ray_tmp), TOKEN_ENV: token}
                proc = subprocess.run(
                    [sys.executable, "-m", "gpo_ray", "optimize", str(cfg_file), "--quiet", "--address", "local"],
                    capture_output=True, text=True, env=env, timeout=300)
        finally:
            subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)

    assert refused_without_token >= 1
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((config.run_dir / "results.json").read_text())["status"] == "completed"
    assert len(proxy.seen) > 10 and set(proxy.seen) == {f"Bearer {token}"}
    assert proxy.refused == refused_without_token
    assert token not in proc.stdout and token not in proc.stderr
    needle = token.encode()
    assert [p for p in config.run_dir.rglob("*") if p.is_file() and needle in p.read_bytes()] == []
