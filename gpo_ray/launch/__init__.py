"""The launch layer: what a run or a sweep stands on - endpoints, the Ray session, the actors with a cold or warm
start, their teardown (`RunSession`, session.py) - and the checks made before anything is started."""

from gpo_ray.launch.actors import ACTOR_OPTIONS, RunActors, kill_actors, node_options, shipped_modules, start_actors
from gpo_ray.launch.cluster import check_cluster, ray_session, ray_target, setup_logs, sized_for_run
from gpo_ray.launch.endpoints import Endpoint, endpoints_for, judge_endpoint
from gpo_ray.launch.failures import failures_named, llm_error_in, metric_import_error_in
from gpo_ray.launch.session import Results, RunSession, warm_start_applies

__all__ = [
    "ACTOR_OPTIONS", "Endpoint", "Results", "RunActors", "RunSession", "check_cluster", "endpoints_for",
    "failures_named", "judge_endpoint", "kill_actors", "llm_error_in", "metric_import_error_in", "node_options",
    "ray_session", "ray_target", "setup_logs", "shipped_modules", "sized_for_run", "start_actors",
    "warm_start_applies",
]
