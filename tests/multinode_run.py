"""Driver for the multi-node test: a real Ray cluster of three nodes on this machine (ray.cluster_utils),
a head with `gpo_head` and two workers with `gpo_evaluator`/`gpo_refiner`, optimizing several tasks against
the fake endpoint. Run as a subprocess (one Ray cluster per process); prints one JSON report.

    python -m tests.multinode_run OUT_DIR [--remove-node]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from gpo_ray.api import RunActors, optimize
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, make_config


def main() -> None:
    out = Path(sys.argv[1])
    remove = "--remove-node" in sys.argv
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"gpo_head": 1}})
    workers = [cluster.add_node(num_cpus=1, resources={"gpo_evaluator": 100, "gpo_refiner": 100}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    head_id = ray.get_runtime_context().get_node_id()
    worker_ids = {w.node_id for w in workers}

    base = make_config(out / "cfg", "http://placeholder/v1")
    fake_cfg = fake_config(base).model_copy(update={"latency_s": 0.05})
    report: dict = {"head": head_id, "workers": sorted(worker_ids)}
    with ThreadedFake(fake_cfg) as fake:
        def cluster_config(name: str):
            cfg = make_config(out / name, fake.base_url)
            return cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"num_evaluators": 4})})

        undisturbed = optimize(cluster_config("undisturbed"))
        placed: dict[str, list[str]] = {}

        def record(actors: RunActors) -> None:
            placed["evaluators"] = ray.get([h.node_id.remote() for h in actors.evaluators])
            placed["refiners"] = ray.get([h.node_id.remote() for h in actors.refiners])
            placed["memory"] = [ray.get(actors.memory.node_id.remote())]

        config = cluster_config("disturbed" if remove else "placed")
        removed = threading.Event()

        def remove_a_worker() -> None:
            checkpoint = config.run_dir / "checkpoints" / task_file_name("example/arithmetic")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if checkpoint.exists() and len(checkpoint.read_text().splitlines()) >= 2:
                    cluster.remove_node(workers[0], allow_graceful=False)
                    removed.set()
                    return
                time.sleep(0.05)

        if remove:
            threading.Thread(target=remove_a_worker, daemon=True).start()
        result = optimize(config, on_actors_started=record)
    report.update(
        placed=placed,
        removed=removed.is_set(),
        same_result=result.tasks == undisturbed.tasks,
        steps={
            t: [json.loads(x)["step"] for x in (config.run_dir / "checkpoints" / task_file_name(t)).read_text().splitlines()]
            for t in result.tasks
        },
        expected_steps={t: len(r.steps) for t, r in undisturbed.tasks.items()},
    )
    print("REPORT " + json.dumps(report))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
