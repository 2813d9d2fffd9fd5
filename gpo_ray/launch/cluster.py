"""The Ray session of a run: which cluster it joins or starts, the checks made before anything is written (an
address that answers, a token when the cluster wants one), start, join and shutdown, the actor counts sized for
the cluster, and the run's log with the API keys and Ray's token masked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from gpo_ray.config import RunConfig
from gpo_ray.errors import RunFailed, error_line
from gpo_ray.logs import configure_logging, library_logs, secret_values
from gpo_ray.runtime.local_cluster import sized_cluster, stop_unused_daemons
from gpo_ray.runtime.ray_address import ClusterUnreachable, check_ray_address
from gpo_ray.runtime.ray_auth import check_ray_auth, ray_token_values
from gpo_ray.runtime.signals import sigterm_handler_kept

# What Ray says on every start of a local cluster: into the run's log only. (Token auth is Ray's safe default.)
RAY_ROUTINE_NOTICES = ("Token authentication is enabled for this Ray cluster",
                       # ray.init on the warm start's thread: the main thread puts back gpo-ray's own handler
                       "SIGTERM handler is not set because current thread is not the main thread")


def ray_target(address: str | None) -> tuple[str, str]:
    """(the Ray address a run joins, where it comes from): the config's or --address, else RAY_ADDRESS (what
    `ray job submit` sets), else "local" - a new cluster even when another one runs on this machine: joining
    is explicit."""
    if address:
        return address, "--address / cluster.address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "the RAY_ADDRESS environment variable"
    return "local", "the default"


def check_cluster(address: str | None) -> None:
    """Fail at once (`ClusterUnreachable`, exit 2) when no Ray head answers at the address a run would join;
    called before anything is written or started. A process that already has Ray (tests, notebooks) uses it.
    A cluster with token authentication gets the token from the environment, or fails here too (`check_ray_auth`)."""
    import ray

    if not ray.is_initialized():
        target, source = ray_target(address)
        check_ray_address(target, source=source)
        check_ray_auth(target, source=source)


@contextlib.contextmanager
def ray_session(address: str | None, *, output: str = "quiet") -> Iterator[bool]:
    """Join `address` (or RAY_ADDRESS), else start a local cluster; reuse one this process already has. Yields
    whether it started a cluster for this run (which then keeps only the daemons the run uses).

    Ray's driver-side messages go into the run's log (driver.jsonl, with where Ray's own session logs are),
    not onto the console; in console `output`, its warnings other than routine notices are shown as gpo-ray lines."""
    import ray

    if ray.is_initialized():
        yield False
        return
    target, _ = ray_target(address)
    with library_logs(console=output == "console", routine=RAY_ROUTINE_NOTICES, detached=("ray",)):
        try:
            # Ray installs SIGTERM handlers of its own in the driver (exit code 15, a C++ stack dump): keep ours.
            with sigterm_handler_kept(on_abort=ray.shutdown):
                # A cluster started for the run: no worker prestarted when the driver connects. The actors get
                # workers of their own as they start; a small run's only actor is the memory, and the prestarted
                # worker stayed idle beside it, 48 MB PSS (benchmarks/README.md, start-up and footprint).
                extra = {"_system_config": {"prestart_worker_first_driver": False}} if target == "local" else {}
                context = ray.init(address=target, include_dashboard=False, log_to_driver=False,
                                   configure_logging=False, **extra)
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception too ("timed out during startup")
            if target == "local":
                raise RunFailed(f"cannot start a local Ray cluster: {error_line(e)}") from None
            raise ClusterUnreachable(f"cannot join the Ray cluster at {target}: {error_line(e)}") from None
        info = context.address_info
        structlog.get_logger().info("ray_started", address=info.get("address"), joined=target != "local",
                                    ray_logs=info.get("session_dir") and os.path.join(info["session_dir"], "logs"))
        if target == "local":
            stop_unused_daemons()  # the dashboard server and the monitors: a one-run cluster does not use them
        try:
            yield target == "local"
        finally:
            ray.shutdown()


def on_one_machine(*, started_here: bool) -> bool:
    """Whether the run's Ray cluster is this machine alone: one it started (`started_here`), or one this process
    has or joined whose only live node is the driver's (a notebook's `ray.init()`, `ray start --head` on a
    workstation, a test session's cluster). Small runs there get the smaller layout (runtime/local_cluster.py)."""
    if started_here:
        return True
    import ray

    if not ray.is_initialized():
        return False
    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - a session that cannot say (Ray Client): sized as a cluster, never wrongly small
        structlog.get_logger().info("one_machine_unknown", sized_as="cluster")
        return False
    return len(alive) == 1 and alive[0].get("NodeID") == here


def sized_for_run(config: RunConfig, *, tasks: int, one_machine: bool) -> RunConfig:
    """The config with the actor counts it leaves unset filled in for this run, and the examples an evaluator scores
    at once, from the task model's cap (runtime/local_cluster.py). A config that sets the deprecated
    `cluster.evaluator_max_in_flight` keeps it, with a warning."""
    log = structlog.get_logger()
    if config.cluster.evaluator_max_in_flight is not None:
        log.warning("evaluator_max_in_flight_deprecated", evaluator_max_in_flight=config.cluster.evaluator_max_in_flight,
                    instead="task_model.max_in_flight: the whole run's cap of requests in flight per endpoint; the "
                    "examples an evaluator scores at once follow from it")
    task_endpoints = 1 if config.task_model.is_embedded else len(config.task_model.all_endpoints())
    cluster = sized_cluster(config.cluster, tasks=tasks, one_machine=one_machine, cpus=_cluster_cpus(one_machine),
                            task_cap=config.task_model.in_flight_cap, optimizer_cap=config.optimizer_model.in_flight_cap,
                            task_endpoints=task_endpoints)
    for role, actors, cap in (("task_model", cluster.num_evaluators, config.task_model.in_flight_cap),
                              ("optimizer_model", cluster.num_refiners, config.optimizer_model.in_flight_cap)):
        if actors and actors > cap:  # counts the config sets: each actor still keeps one call in flight
            log.warning("more_actors_than_calls_in_flight", role=role, actors=actors, max_in_flight=cap,
                        consequence=f"each actor keeps 1 call in flight: up to {actors} at once, above the cap")
    log.info("actors_sized", refiners=cluster.num_refiners, evaluators=cluster.num_evaluators,
             evaluator_items_in_flight=cluster.evaluator_max_in_flight,
             task_model_max_in_flight=config.task_model.in_flight_cap,
             optimizer_max_in_flight=config.optimizer_model.in_flight_cap)
    return config.model_copy(update={"cluster": cluster})


def _cluster_cpus(one_machine: bool) -> int | None:
    """The CPUs the run's actors share: this machine's on one machine, else the joined cluster's (None when Ray is
    not up yet)."""
    if one_machine:
        return os.cpu_count()
    import ray

    return int(ray.cluster_resources().get("CPU", 0)) or None if ray.is_initialized() else None


def setup_logs(config: RunConfig, logs_dir: Path, output: str) -> None:
    """The run's log (logs_dir/driver.jsonl and the console in `output`), with the values of its API keys, the
    Chroma token and Ray's token masked wherever they would appear."""
    configure_logging(mode=output, log_file=logs_dir / "driver.jsonl",
                      secrets=secret_values([config.task_model.api_key_env, config.optimizer_model.api_key_env,
                                             config.judge_model.api_key_env, config.cluster.chroma_token_env])
                      + ray_token_values())
