"""The same gpo-ray run on one Ray node and on a simulated three-node cluster, in one process, one after the other.

    .venv/bin/python -m benchmarks.multinode --tasks 27          # about 2 minutes on 2 cores
    .venv/bin/python -m benchmarks.multinode --tasks 9 --evaluators 4 --out /tmp/m.json

The three-node cluster is the one tests/multinode_run.py starts (ray.cluster_utils.Cluster on this machine): a head
node with `gpo_head` (the driver, the controller, the memory actors) and two worker nodes with `gpo_evaluator` and
`gpo_refiner`, so the evaluators and refiners are spread over the workers. All nodes share this machine's cores:
the point is that nothing serialises on the head (utilization and CPU per call stay where the one-node run has
them), not a speed-up. Reported for each: wall time, utilization, CPU per call, where the actors were placed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.runs import distributed_run, strip
from benchmarks.harness.workload import Workload, endpoint_config
from gpo_ray.testing import ProcessFake


def _placed(nodes: dict[str, str]) -> Any:
    """An `on_actors_started` companion: where each kind of actor runs, by node role."""
    import ray

    def record(actors: Any, into: dict[str, list[str]]) -> None:
        for kind, handles in (("memory", actors.memory_shards or [actors.memory]), ("refiners", actors.refiners),
                              ("evaluators", actors.evaluators)):
            into[kind] = [nodes.get(n, n) for n in ray.get([h.node_id.remote() for h in handles])]

    return record


def one_run(workload: Workload, root: Path, args: argparse.Namespace, *, nodes: int) -> dict[str, Any]:
    import ray

    cluster = None
    if nodes == 1:
        cli.start_ray()
        roles = {ray.get_runtime_context().get_node_id(): "head"}
    else:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"gpo_head": 1}})
        workers = [cluster.add_node(num_cpus=1, resources={"gpo_evaluator": 100, "gpo_refiner": 100})
                   for _ in range(nodes - 1)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
        roles = {ray.get_runtime_context().get_node_id(): "head",
                 **{w.node_id: f"worker-{i + 1}" for i, w in enumerate(workers)}}
    placed: dict[str, list[str]] = {}
    try:
        with ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots)) as endpoint:
            record = _placed(roles)
            run = strip(distributed_run(workload, endpoint, root, args, evaluators=args.evaluators,
                                        also_started=lambda actors: record(actors, placed)))
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    run["nodes"] = nodes
    run["placed"] = placed
    return run


def measure(workload: Workload, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for nodes in (1, 3):
        started = time.perf_counter()
        out[f"{nodes}_node"] = one_run(workload, root, args, nodes=nodes)
        print(f"  {nodes} node(s): {out[f'{nodes}_node']['wall_s']:.1f} s "
              f"(with cluster start-up {time.perf_counter() - started:.0f} s)", flush=True)
    return out


def print_section(report: dict[str, Any]) -> None:
    print(f"\n{'':10}{'wall s':>8}{'calls':>8}{'util':>7}{'util*':>7}{'CPU ms/call':>12}  placement")
    for key in ("1_node", "3_node"):
        r = report[key]
        u = r["utilization"]
        where = "; ".join(f"{k}: {', '.join(sorted(set(v)))}" for k, v in r["placed"].items())
        print(f"{key.replace('_', ' '):10}{r['wall_s']:8.1f}{u['calls']:8d}{u['whole_run']:7.2f}{u['active_window']:7.2f}"
              f"{r['cpu_ms_per_call']:12.2f}  {where}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("multinode", __doc__)
    cli.add_options(p, *cli.RUN_OPTIONS)
    cli.add_out(p, "multinode")
    args = p.parse_args(argv)
    if args.evaluators == cli.OPTIONS["--evaluators"]["default"]:
        args.evaluators = 4  # two per worker node, as tests/multinode_run.py has them
    if args.refiners is None:
        args.refiners = 2  # one per worker node
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(argv, args, lambda report, workload, root: report.update(measure(workload, root, args)),
                   print_section, with_ray=False)


if __name__ == "__main__":
    raise SystemExit(main())
