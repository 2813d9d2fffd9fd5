"""A role with three endpoints of one model, one killed and one wedged (SIGSTOP) mid-run, as happens to a vLLM node:
the run completes with the same results, the dead and wedged endpoints are ejected within seconds and get almost no
work after, and the wedged one, continued, is taken back. Each fake runs in its own process, so signals hit it alone.
The live metrics tell the same per endpoint: requests and ejections as in usage.json, the dead one out, the live in.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest

from gpo_ray.api import optimize
from gpo_ray.cli import main
from gpo_ray.config import EndpointSpec, LLMRoleConfig
from gpo_ray.testing import ProcessFake
from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.integration.test_metrics_ray import scrape_all_nodes

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _served(fake: ProcessFake) -> int:
    return int(fake.stats()["requests"])


def test_a_dead_and_a_wedged_endpoint_are_ejected_and_a_continued_one_is_taken_back(tmp_path, capsys):
    base = make_config(tmp_path / "cfg", "http://placeholder/v1", epochs=10)
    fakes = [ProcessFake(fake_config(base).model_copy(update={"latency_s": 0.02})) for _ in range(3)]
    dead, wedged, live = fakes
    try:
        urls = [f.base_url for f in fakes]
        # Long enough to probe the continued one after: at 5 epochs a run on a loaded machine ended about 5 s after
        # the SIGCONT, before the wedged endpoint's next probe was due.
        config = make_config(tmp_path, urls[2], epochs=10)
        role = LLMRoleConfig(base_url=urls[0], endpoints=[EndpointSpec(base_url=u) for u in urls[1:]],
                             model="fake-llm", max_tokens=64, timeout_s=60, max_retries=6)
        run = f"ejection-{uuid.uuid4().hex[:8]}"  # the metrics' run tag: other tests' runs share this cluster
        config = config.model_copy(update={"task_model": role, "run_dir": tmp_path / run})
        at_fault: dict[str, float | int] = {}

        def break_two_then_continue_one() -> None:
            while _served(live) < 60:  # mid-run: the three share the work until here
                time.sleep(0.05)
            at_fault.update(dead_before=_served(dead), wedged_before=_served(wedged), at=time.monotonic())
            os.kill(dead.process.pid, signal.SIGKILL)
            os.kill(wedged.process.pid, signal.SIGSTOP)
            time.sleep(14.0)  # past the wedge limit (at least 10 s)
            os.kill(wedged.process.pid, signal.SIGCONT)
            at_fault["continued_at"] = time.monotonic()

        breaker = threading.Thread(target=break_two_then_continue_one, daemon=True)
        breaker.start()
        results = optimize(config)
        breaker.join(30)
        assert "continued_at" in at_fault, "the run ended before the faults were set"
        wedged_after_continue = _served(wedged)
    finally:
        for f in (wedged, live):
            f.close()
        dead.process.join(5)

    assert all(r.status == "completed" for r in results.tasks.values())
    usage = json.loads((tmp_path / run / "usage.json").read_text())["task_model"]
    sent, ejected = usage["endpoints"], usage["ejections"]
    assert set(sent) == set(urls) and ejected.get(urls[0], 0) >= 1 and ejected.get(urls[1], 0) >= 1
    # After the faults, the dead endpoint got only what was in flight and the few tries that ejected it.
    total_after = sum(sent.values()) - sum(v for v in (at_fault["dead_before"], at_fault["wedged_before"]))
    dead_after = sent[urls[0]] - int(at_fault["dead_before"])
    assert dead_after <= 0.05 * total_after + 16, (dead_after, total_after)
    # The wedged one answered again once continued, and was sent more work after its probe.
    assert wedged_after_continue > int(at_fault["wedged_before"])
    capsys.readouterr()
    assert main(["report", str(tmp_path / run), "--format", "md", "--output", "-"]) == 0
    report = capsys.readouterr().out
    assert "Endpoints of roles with several" in report
    table = report.split("Endpoints of roles with several")[1]
    assert f"| task\\_model | {urls[0]} | {sent[urls[0]]:,} |" in table, table[:600]

    # The live metrics (Ray exports them every few seconds: poll, with a deadline), summed over the actors' processes.
    def series(samples, name: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for n, labels, value in samples:
            if n == name and labels.get("run") == run and labels.get("role") == "task_model":
                out.setdefault(labels.get("endpoint", "?"), []).append(value)
        return out

    deadline = time.monotonic() + 90
    while True:
        samples = scrape_all_nodes()
        requests = {u: sum(v) for u, v in series(samples, "ray_gpo_llm_endpoint_requests_total").items()}
        ejections = {u: sum(v) for u, v in series(samples, "ray_gpo_llm_endpoint_ejections_total").items()}
        up = series(samples, "ray_gpo_llm_endpoint_up")
        if (requests == sent and ejections == ejected) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert requests == sent and ejections == ejected, (requests, ejections)
    assert set(up) == set(urls) and min(up[urls[0]]) == 0.0 and min(up[urls[2]]) == 1.0, up  # dead out, live in
