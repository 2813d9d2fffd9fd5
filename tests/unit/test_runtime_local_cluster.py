"""How many actors a run gets when its config leaves the counts unset, and that a config's own counts always win."""

from __future__ import annotations

import pytest

from gpo_ray.config import ClusterSettings, load_config
from gpo_ray.runtime.local_cluster import DEFAULT_ACTORS, SMALL_RUN_TASKS, sized_cluster


def counts(cluster: ClusterSettings) -> tuple[int | None, int | None]:
    return cluster.num_refiners, cluster.num_evaluators


@pytest.mark.parametrize("tasks", [1, SMALL_RUN_TASKS])
def test_a_small_run_on_its_own_cluster_gets_one_refiner_and_one_evaluator(tasks):
    assert counts(sized_cluster(ClusterSettings(), tasks=tasks, own_cluster=True)) == (1, 1)


def test_a_larger_run_or_a_joined_cluster_gets_the_default_counts():
    assert counts(sized_cluster(ClusterSettings(), tasks=SMALL_RUN_TASKS + 1, own_cluster=True)) == (2, 2)
    assert counts(sized_cluster(ClusterSettings(), tasks=1, own_cluster=False)) == (2, 2)
    assert DEFAULT_ACTORS == 2


def test_counts_the_config_sets_are_kept_and_the_other_one_is_sized():
    cluster = ClusterSettings(num_evaluators=3)
    assert counts(sized_cluster(cluster, tasks=1, own_cluster=True)) == (1, 3)
    assert counts(sized_cluster(cluster, tasks=27, own_cluster=True)) == (2, 3)


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


def test_only_a_small_run_on_its_own_cluster_with_no_evaluator_count_set_scores_in_its_driver():
    from gpo_ray.runtime.local_cluster import scores_in_driver

    assert scores_in_driver(ClusterSettings(), tasks=SMALL_RUN_TASKS, own_cluster=True)
    assert not scores_in_driver(ClusterSettings(), tasks=SMALL_RUN_TASKS + 1, own_cluster=True)
    assert not scores_in_driver(ClusterSettings(), tasks=1, own_cluster=False)
    assert not scores_in_driver(ClusterSettings(num_evaluators=1), tasks=1, own_cluster=True)
