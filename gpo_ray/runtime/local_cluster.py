"""A Ray cluster that gpo-ray starts for one run on this machine keeps only what the run uses.

Ray's `ray.init()` of a new local cluster starts, besides the GCS server and the raylet, an API server
(dashboard.py; with include_dashboard=False it only reports usage stats), the autoscaler monitor and a log monitor.
A cluster started for one run has nothing to autoscale, sends no worker output to the driver (log_to_driver=False)
and serves no dashboard, yet these three hold about 180 MB (PSS) and their own CPU: they are stopped as soon as Ray
is up. The dashboard agent stays (it exports the gpo_* metrics, docs/observability.md), and so does the runtime-env
agent: the raylet exits without them. A cluster the run joins is never touched.

A small run on one machine (a cluster started for it, or a single-node one the driver is on: a notebook's
`ray.init()`, `ray start --head` on a workstation) also gets one refiner and one evaluator instead of two each, when
the config leaves
their counts unset: one evaluator carries a 640 calls/s endpoint (benchmarks/README.md), and each actor is a worker
process of about 65 MB and its start-up. A larger run gets one of each per 2 CPUs (2 to 8). The calls in flight
follow from one knob, the role's `max_in_flight` (the whole run's cap per endpoint): each actor that calls an endpoint
gets an equal share of it (`in_flight_share`), and an evaluator scores as many examples at once as its shares allow. When it also leaves `num_evaluators` unset, it has no evaluator actor: its
driver scores (`scores_in_driver`), as every run's driver does while Ray starts (controller/warm_start.py), and with
`num_refiners` unset it asks the optimizer from there too (`generates_in_driver`).
"""

from __future__ import annotations

from typing import Any

import structlog

from gpo_ray.config import DEFAULT_IN_FLIGHT, ClusterSettings
from gpo_ray.llm.concurrency import in_flight_share

DEFAULT_ACTORS = 2  # refiners, and evaluators, of a run the rule below does not shrink, on a machine of 2 to 5 CPUs
MAX_DEFAULT_ACTORS = 8  # a larger machine gets one of each per 2 CPUs (each actor uses about 1 ms of CPU a call), up to this
SMALL_RUN_TASKS = 3  # a run of at most this many tasks on one machine is a small run (`small_run`)


def small_run(*, tasks: int, one_machine: bool) -> bool:
    """A run of at most SMALL_RUN_TASKS tasks on one machine (a cluster started for the run, or a single-node cluster
    on the driver's node): the smaller layout's condition (`default_actors`, `scores_in_driver`, `generates_in_driver`)."""
    return one_machine and tasks <= SMALL_RUN_TASKS


def default_actors(*, tasks: int, one_machine: bool, cpus: int | None = None) -> int:
    """Refiners (and evaluators) of a run whose config leaves their count unset: 1 for a run of at most
    SMALL_RUN_TASKS tasks on one machine (`one_machine`: a cluster started for the run, or a single-node cluster
    on the driver's node); else one per 2 of the cluster's `cpus`
    (DEFAULT_ACTORS when unknown), at least DEFAULT_ACTORS and at most MAX_DEFAULT_ACTORS."""
    if small_run(tasks=tasks, one_machine=one_machine):
        return 1
    return DEFAULT_ACTORS if cpus is None else max(DEFAULT_ACTORS, min(MAX_DEFAULT_ACTORS, cpus // 2))


def sized_cluster(cluster: ClusterSettings, *, tasks: int, one_machine: bool, cpus: int | None = None,
                  task_cap: int | None = None, optimizer_cap: int | None = None,
                  task_endpoints: int = 1) -> ClusterSettings:
    """`cluster` with its unset actor counts filled in (`default_actors`), never more actors of a role than its cap
    of requests in flight (`task_cap`, `optimizer_cap`: each needs a slot), and the examples one evaluator scores at
    once (`evaluator_max_in_flight`, when unset): its share of the task model's cap on each of the `task_endpoints`
    it calls. Counts the config sets are kept."""
    count = default_actors(tasks=tasks, one_machine=one_machine, cpus=cpus)
    evaluators = cluster.num_evaluators or min(count, task_cap or count)
    refiners = cluster.num_refiners or min(count, optimizer_cap or count)
    items = cluster.evaluator_max_in_flight
    if items is None:
        cap = task_cap if task_cap is not None else DEFAULT_IN_FLIGHT
        items = in_flight_share(cap, callers=evaluators) * max(1, task_endpoints)
    return cluster.model_copy(update={"num_refiners": refiners, "num_evaluators": evaluators,
                                      "evaluator_max_in_flight": items})


def scores_in_driver(cluster: ClusterSettings, *, tasks: int, one_machine: bool) -> bool:
    """Whether a run scores in its driver process instead of evaluator actors: a small run (at most SMALL_RUN_TASKS
    tasks) on one machine (`default_actors`), whose config leaves `num_evaluators` unset. Its driver scores its first
    calls anyway while Ray starts (controller/warm_start.py); one machine gains nothing from a second process doing
    the same I/O-bound work, which costs about 60 MB and a worker start. It keeps the whole of the task model's
    cap of requests in flight."""
    return small_run(tasks=tasks, one_machine=one_machine) and cluster.num_evaluators is None


def generates_in_driver(cluster: ClusterSettings, *, tasks: int, one_machine: bool) -> bool:
    """The refiners' twin of `scores_in_driver`: a small run on one machine whose config leaves `num_refiners` unset
    asks the optimizer from its driver, as every run's driver does while Ray starts. Its only actor is then the
    trajectory memory (Chroma and the embedder stay out of the driver)."""
    return small_run(tasks=tasks, one_machine=one_machine) and cluster.num_refiners is None


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
