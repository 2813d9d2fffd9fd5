"""A Ray cluster that gpo-ray starts for one run on this machine keeps only what the run uses.

Ray's `ray.init()` of a new local cluster starts, besides the GCS server and the raylet, an API server
(dashboard.py; with include_dashboard=False it only reports usage stats), the autoscaler monitor and a log monitor.
A cluster started for one run has nothing to autoscale, sends no worker output to the driver (log_to_driver=False)
and serves no dashboard, yet these three hold about 180 MB (PSS) and their own CPU: they are stopped as soon as Ray
is up. The dashboard agent stays (it exports the gpo_* metrics, docs/observability.md), and so does the runtime-env
agent: the raylet exits without them. A cluster the run joins is never touched.

A small run on such a cluster also gets one refiner and one evaluator instead of two each, when the config leaves
their counts unset: one evaluator carries a 640 calls/s endpoint (benchmarks/README.md), and each actor is a worker
process of about 65 MB and its start-up. When it also leaves `num_evaluators` unset, it has no evaluator actor: its
driver scores (`scores_in_driver`), as every run's driver does while Ray starts (controller/warm_start.py).
"""

from __future__ import annotations

from typing import Any

import structlog

from gpo_ray.config import ClusterSettings

DEFAULT_ACTORS = 2  # refiners, and evaluators, of a run the rule below does not shrink
SMALL_RUN_TASKS = 3  # a run of at most this many tasks on a cluster started for it gets one of each


def sized_cluster(cluster: ClusterSettings, *, tasks: int, own_cluster: bool) -> ClusterSettings:
    """`cluster` with its unset actor counts filled in: 1 each for a run of at most SMALL_RUN_TASKS tasks on a
    cluster started for this run (`own_cluster`), else DEFAULT_ACTORS. Counts the config sets are kept."""
    count = 1 if own_cluster and tasks <= SMALL_RUN_TASKS else DEFAULT_ACTORS
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
