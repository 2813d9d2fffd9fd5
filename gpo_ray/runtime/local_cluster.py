"""A Ray cluster that gpo-ray starts for one run on this machine keeps only what the run uses.

Ray's `ray.init()` of a new local cluster starts, besides the GCS server and the raylet, an API server
(dashboard.py; with include_dashboard=False it only reports usage stats), the autoscaler monitor and a log monitor.
A cluster started for one run has nothing to autoscale, sends no worker output to the driver (log_to_driver=False)
and serves no dashboard, yet these three hold about 180 MB (PSS) and their own CPU: they are stopped as soon as Ray
is up. The dashboard agent stays (it exports the gpo_* metrics, docs/observability.md), and so does the runtime-env
agent: the raylet exits without them. A cluster the run joins is never touched.

A small run on such a cluster, or any run on a machine of at most four cores, also gets one refiner and one evaluator
instead of two each, when the config leaves their counts unset: one evaluator carries a 640 calls/s endpoint (benchmarks/README.md), and each actor is a worker
process of about 65 MB and its start-up. When it also leaves `num_evaluators` unset, it has no evaluator actor: its
driver scores (`scores_in_driver`), as every run's driver does while Ray starts (controller/warm_start.py).
"""

from __future__ import annotations

import os
from typing import Any

import structlog

from gpo_ray.config import ClusterSettings

DEFAULT_ACTORS = 2  # refiners, and evaluators, of a run the rule below does not shrink
SMALL_RUN_TASKS = 3  # a run of at most this many tasks on a cluster started for it gets one of each


SMALL_MACHINE_CORES = 4  # a cluster started on a machine with at most this many cores gets one of each


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers narrow), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def sized_cluster(cluster: ClusterSettings, *, tasks: int, own_cluster: bool,
                  cores: int | None = None) -> ClusterSettings:
    """`cluster` with its unset actor counts filled in: on a cluster started for this run (`own_cluster`), 1 each
    for a run of at most SMALL_RUN_TASKS tasks or on a machine of at most SMALL_MACHINE_CORES `cores` (default:
    `usable_cores()`); else DEFAULT_ACTORS. Counts the config sets are kept.

    On one small machine a second refiner and evaluator add processes, not cores: each idle Ray worker costs about
    10 ms of CPU a second, and at 27 tasks on 2 cores one of each used 12-15% less CPU per call than two of each at
    the same utilization (benchmarks/README.md). One evaluator's event loop carries a 640 calls/s endpoint at about a
    third of a core."""
    cores = usable_cores() if cores is None else cores
    small = tasks <= SMALL_RUN_TASKS or cores <= SMALL_MACHINE_CORES
    count = 1 if own_cluster and small else DEFAULT_ACTORS
    return cluster.model_copy(update={"num_refiners": cluster.num_refiners or count,
                                      "num_evaluators": cluster.num_evaluators or count})


def scores_in_driver(cluster: ClusterSettings, *, tasks: int, own_cluster: bool) -> bool:
    """Whether a run scores in its driver process instead of evaluator actors: a small run (at most SMALL_RUN_TASKS
    tasks) on a cluster started for it, whose config leaves `num_evaluators` unset. Its driver scores its first
    calls anyway while Ray starts (controller/warm_start.py); one machine gains nothing from a second process doing
    the same I/O-bound work, which costs about 60 MB and a worker start. The in-flight bound stays
    `evaluator_max_in_flight`."""
    return own_cluster and tasks <= SMALL_RUN_TASKS and cluster.num_evaluators is None


# Node.kill_<name> for each daemon a one-run local cluster does not use.
UNUSED_LOCAL_DAEMONS = ("dashboard", "monitor", "log_monitor")


def stop_unused_daemons() -> list[str]:
    """Stop UNUSED_LOCAL_DAEMONS of the local cluster this driver started; the names of those stopped.

    Uses Ray's own Node handle (what ray.shutdown kills at the end). A Ray without it, or a daemon already gone,
    leaves things as they are: this saves memory, it is never a reason to fail a run."""
    log = structlog.get_logger()
    node = _started_node()
    if node is None:
        return []
    stopped = []
    for name in UNUSED_LOCAL_DAEMONS:
        kill = getattr(node, f"kill_{name}", None)
        if kill is None:
            continue
        try:
            kill(check_alive=False)
        except Exception as e:  # noqa: BLE001 - an optimisation, never fatal
            log.info("ray_daemon_not_stopped", daemon=name, error=f"{type(e).__name__}: {e}")
            continue
        stopped.append(name)
    log.info("ray_unused_daemons_stopped", daemons=stopped)
    return stopped


def _started_node() -> Any:
    """Ray's Node of the cluster this process started with ray.init (None when it joined one, or Ray changed)."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - a Ray without this module
        return None
    node = getattr(worker, "_global_node", None)
    if node is None or not getattr(node, "head", False) or not getattr(node, "ray_init_cluster", False):
        return None
    return node
