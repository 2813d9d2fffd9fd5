"""Issue 17's probe: is a stall lost when the driver is SIGKILLed (not part of CI; about 2 minutes on 2 cores).

    .venv/bin/python -m benchmarks.chaos_stall_probe

The short chaos soak (seed 2) served 3 stalled replies that neither usage.json nor any log counted; the driver was
SIGKILLed 0.5 s after the stall window ended. Two explanations: the client counted them and the kill lost the counts,
or no client had counted them yet (a stalled reply fails only when `read_timeout_s`, 10 s, cuts it) when the kill
took the clients with it. This probe runs a 2-task run on a simulated cluster against the fake endpoint, turns every
request into a stall for one round of requests, and SIGKILLs the driver (A) 4 s after the last stall, before the
read timeout, then after a resume (B) 13 s after it, past it. It prints, for each, the stalls served, the
`llm_retry error_kind=stalled` lines in the actors' logs and usage.json's `stalled`.

Measured 2026-12-01 (2 cores, shared). A, three runs: 32, 16 and 48 stalls served, 0 logged, 0 in usage.json - the
soak's stalls were cut short by the kill, seen by no one. B, before the controller kept usage.json current between
steps: 32 served, 32 logged, 32 in usage.json in one run (a step completed before the kill), 8 served, 8 logged but
0 in usage.json in another (no step had completed since the retries); after (commit 5723643): 8, 8 and 8.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def stalled_counts(logs: Path, run_dir: Path) -> tuple[int, int]:
    from benchmarks.chaos import log_evidence

    ev = log_evidence(logs, run_dir)
    return ev["retries_by_kind"].get("stalled", 0), ev["usage_errors"].get("stalled", 0)


def wait_for_requests(fake: Any) -> None:
    last = fake.stats()["requests"]
    while fake.stats()["requests"] == last:
        time.sleep(0.2)


def main() -> None:
    import ray

    from benchmarks import chaos
    from benchmarks.harness import cli
    from benchmarks.harness.workload import SHARED_DATA, endpoint_config, load_workload
    from gpo_ray.testing import ProcessFake

    cli.quiet_logging()
    work = Path(tempfile.mkdtemp(prefix="gpo-stall-probe-"))
    cluster = chaos.SimulatedCluster()
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 logging_level="ERROR")
        logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
        workload = load_workload(2, data_dir=SHARED_DATA, scratch=work)
        with ProcessFake(endpoint_config(workload, latency=2.0, slots=256, timeline=False)) as fake:
            run_dir = work / "run"
            config = chaos.write_config(workload, base_url=fake.base_url, run_dir=run_dir, address=cluster.address,
                                        epochs=30, chroma=None, path=work / "config.json")
            driver = chaos.Driver(config, run_dir, cluster.address, work)
            driver.start()
            for case, kill_after in (("A", 4.0), ("B", 13.0)):
                wait_for_requests(fake)
                time.sleep(3)
                served_before = fake.stats()["faults"].get("stall", 0)
                logged_before, usage_before = stalled_counts(logs, run_dir)
                # Every request a stall until the first round of requests has been served stalls (bursts come a
                # request's latency apart), then none; the kill comes `kill_after` s after the last stall served.
                fake.set_faults(rates={"stall": 1.0}, for_s=60.0)
                while fake.stats()["faults"].get("stall", 0) == served_before:
                    time.sleep(0.1)
                time.sleep(1.0)
                fake.set_faults(rates={})
                last_stall = time.monotonic()
                time.sleep(kill_after)
                driver.sigkill()
                killed_after = time.monotonic() - last_stall
                time.sleep(5)
                served = fake.stats()["faults"].get("stall", 0) - served_before
                logged, usage = stalled_counts(logs, run_dir)
                print(f"{case}: driver SIGKILLed {killed_after:.1f} s after the last stall was served "
                      f"(read timeout {chaos.READ_TIMEOUT_S:g} s): {served} stalls served, "
                      f"{logged - logged_before} logged, {usage - usage_before} in usage.json", flush=True)
                driver.resume()
            time.sleep(10)
            driver.sigkill()
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"scratch: {work}")


if __name__ == "__main__":
    main()
