"""How many actors a run gets when its config leaves the counts unset, and that a config's own counts always win."""

from __future__ import annotations

import pytest

from gpo_ray.config import DEFAULT_IN_FLIGHT, ClusterSettings, load_config
from gpo_ray.runtime.local_cluster import DEFAULT_ACTORS, SMALL_RUN_TASKS, sized_cluster


def counts(cluster: ClusterSettings) -> tuple[int | None, int | None]:
    return cluster.num_refiners, cluster.num_evaluators


@pytest.mark.parametrize("tasks", [1, SMALL_RUN_TASKS])
def test_a_small_run_on_its_one_machine_gets_one_refiner_and_one_evaluator(tasks):
    assert counts(sized_cluster(ClusterSettings(), tasks=tasks, one_machine=True)) == (1, 1)


def test_a_larger_run_or_a_joined_cluster_gets_the_default_counts():
    assert counts(sized_cluster(ClusterSettings(), tasks=SMALL_RUN_TASKS + 1, one_machine=True)) == (2, 2)
    assert counts(sized_cluster(ClusterSettings(), tasks=1, one_machine=False)) == (2, 2)
    assert DEFAULT_ACTORS == 2


def test_counts_the_config_sets_are_kept_and_the_other_one_is_sized():
    cluster = ClusterSettings(num_evaluators=3)
    assert counts(sized_cluster(cluster, tasks=1, one_machine=True)) == (1, 3)
    assert counts(sized_cluster(cluster, tasks=27, one_machine=True)) == (2, 3)


def test_a_larger_machine_gets_one_of_each_per_two_cpus_up_to_eight():
    sized = [counts(sized_cluster(ClusterSettings(), tasks=27, one_machine=True, cpus=cpus)) for cpus in (2, 8, 64)]
    assert sized == [(2, 2), (4, 4), (8, 8)]
    assert counts(sized_cluster(ClusterSettings(), tasks=1, one_machine=True, cpus=64)) == (1, 1), "a small run"


def test_no_more_actors_of_a_role_than_its_cap_of_calls_in_flight():
    """Each actor needs a slot of the role's cap (max_in_flight, the whole run's): a cap of 1 gets one actor."""
    sized = sized_cluster(ClusterSettings(), tasks=27, one_machine=True, cpus=64, task_cap=1, optimizer_cap=3)
    assert counts(sized) == (3, 1)


def test_an_evaluator_scores_its_share_of_the_task_models_cap_at_once():
    """One knob: the task model's max_in_flight (per endpoint, whole run) divided among the evaluators, times the
    endpoints each calls; the deprecated cluster.evaluator_max_in_flight, when set, is kept."""
    one_task = sized_cluster(ClusterSettings(), tasks=1, one_machine=True, task_cap=64)
    assert one_task.evaluator_max_in_flight == 64
    many = sized_cluster(ClusterSettings(num_evaluators=4), tasks=27, one_machine=True, task_cap=64, task_endpoints=2)
    assert many.evaluator_max_in_flight == 32
    kept = sized_cluster(ClusterSettings(evaluator_max_in_flight=5), tasks=1, one_machine=True, task_cap=64)
    assert kept.evaluator_max_in_flight == 5


def test_a_config_file_without_counts_leaves_them_to_the_run(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("tasks: [bbh/navigate]\ncluster: {evaluator_max_in_flight: 4}\n")
    config = load_config(path)
    assert counts(config.cluster) == (None, None)
    # Written to config.json as null, so a resume sizes the run again by the same rule.
    assert config.public_dict()["cluster"]["num_evaluators"] is None


def test_a_count_below_one_is_a_config_error():
    with pytest.raises(ValueError):
        ClusterSettings(num_evaluators=0)


def test_only_a_small_run_on_its_one_machine_with_no_evaluator_count_set_scores_in_its_driver():
    from gpo_ray.runtime.local_cluster import scores_in_driver

    assert scores_in_driver(ClusterSettings(), tasks=SMALL_RUN_TASKS, one_machine=True)
    assert not scores_in_driver(ClusterSettings(), tasks=SMALL_RUN_TASKS + 1, one_machine=True)
    assert not scores_in_driver(ClusterSettings(), tasks=1, one_machine=False)
    assert not scores_in_driver(ClusterSettings(num_evaluators=1), tasks=1, one_machine=True)


def test_the_deprecated_evaluator_max_in_flight_still_loads_and_is_named_in_a_warning(tmp_path):
    from structlog.testing import capture_logs

    from gpo_ray.launch.cluster import sized_for_run

    path = tmp_path / "run.yaml"
    path.write_text("tasks: [bbh/navigate]\ntask_model: {base_url: 'http://e/v1'}\n"
                    "cluster: {evaluator_max_in_flight: 4}\n")
    with capture_logs() as logs:
        sized = sized_for_run(load_config(path), tasks=1, one_machine=True)
    assert sized.cluster.evaluator_max_in_flight == 4
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["evaluator_max_in_flight_deprecated"]
    with capture_logs() as logs:
        sized = sized_for_run(load_config(path).model_copy(
            update={"cluster": ClusterSettings()}), tasks=1, one_machine=True)
    assert not [e for e in logs if e["log_level"] == "warning"]
    assert sized.cluster.evaluator_max_in_flight == DEFAULT_IN_FLIGHT, "the default cap, all for the one scorer"


def test_more_actors_set_than_the_cap_allows_is_named_in_a_warning():
    from structlog.testing import capture_logs

    from gpo_ray.config import RunConfig
    from gpo_ray.launch.cluster import sized_for_run

    config = RunConfig(tasks=["bbh/navigate"], task_model={"base_url": "http://e/v1", "max_in_flight": 2},
                       cluster={"num_evaluators": 3})
    with capture_logs() as logs:
        sized_for_run(config, tasks=1, one_machine=True)
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "more_actors_than_calls_in_flight" and warning["role"] == "task_model"


def test_one_machine_is_a_single_node_cluster_on_the_driver_s_node_and_never_a_guess(monkeypatch):
    """`on_one_machine` for a session this process has (faked here: unit tests start no Ray): one live node that is
    the driver's -> one machine; two live nodes, or another node -> a cluster; a session that cannot say (Ray Client
    raises) -> a cluster, never the small layout by mistake."""
    import ray

    from gpo_ray.launch.cluster import on_one_machine

    class Context:
        def get_node_id(self):
            return "here"

    nodes: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    assert on_one_machine(started_here=True)
    nodes[:] = [{"NodeID": "here", "Alive": True}, {"NodeID": "gone", "Alive": False}]
    assert on_one_machine(started_here=False)
    nodes[:] = [{"NodeID": "here", "Alive": True}, {"NodeID": "worker", "Alive": True}]
    assert not on_one_machine(started_here=False)
    nodes[:] = [{"NodeID": "elsewhere", "Alive": True}]
    assert not on_one_machine(started_here=False)

    def cannot_say():
        raise RuntimeError("not supported in Ray Client mode")

    nodes[:] = [{"NodeID": "here", "Alive": True}]
    monkeypatch.setattr(ray, "nodes", cannot_say)
    assert not on_one_machine(started_here=False)
