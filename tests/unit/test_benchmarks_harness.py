"""The benchmarks' shared harness: the synthetic workload is the same on every machine and run, and utilization is
calls per second over capacity. Fast, no Ray, no endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import adaptive, scaling, speedup, throughput
from benchmarks.harness.measure import endpoint_capacity, utilization
from benchmarks.harness.workload import BBH_SPLITS, endpoint_config, load_workload
from gpo_ray.testing import FakeLLMConfig


def test_the_synthetic_workload_is_deterministic(tmp_path: Path) -> None:
    one = load_workload(3, data_dir=None, scratch=tmp_path / "one")
    two = load_workload(3, data_dir=tmp_path / "absent", scratch=tmp_path / "two")
    assert one.task_names == two.task_names == ["bbh_shaped/t00", "bbh_shaped/t01", "bbh_shaped/t02"]
    assert one.source.startswith("synthetic")
    for a, b in zip(one.tasks, two.tasks, strict=True):
        assert (len(a.train), len(a.eval), len(a.test)) == (BBH_SPLITS["train"], BBH_SPLITS["eval"], BBH_SPLITS["test"])
        assert [(e.input, e.answer) for e in (*a.train, *a.eval, *a.test)] == \
               [(e.input, e.answer) for e in (*b.train, *b.eval, *b.test)]
    assert one.tasks[0].train[0].input != one.tasks[1].train[0].input  # each task its own seed
    # long enough for the fake endpoint's prefix index: shorter questions are tried one by one on every request
    from gpo_ray.testing.scripted import AnswerKeyIndex

    assert min(len(e.input.strip()) for t in one.tasks for e in (*t.train, *t.eval, *t.test)) >= AnswerKeyIndex.PREFIX
    assert one.subset(2).task_names == one.task_names[:2]
    # the endpoint knows every answer of the workload
    key = endpoint_config(one, latency=0.1, slots=4).answer_key
    assert all(key[e.input.strip()] == e.answer for t in one.tasks for e in (*t.train, *t.eval, *t.test))


def test_utilization_is_calls_per_second_over_capacity() -> None:
    config = FakeLLMConfig(latency_s=0.1, concurrency=4)
    assert endpoint_capacity(config) == pytest.approx(40.0)
    assert endpoint_capacity(FakeLLMConfig(latency_s=(0.1, 0.3), concurrency=4)) == pytest.approx(20.0)
    # 8 calls served between t=10 and t=12 (2 s active) of a 4 s run that began at t=9
    timeline = [(10.0, 10.1, "optimizer"), (10.0, 10.1, "optimizer")] + [(11.0, 12.0, "task")] * 6
    u = utilization(timeline, capacity=4.0, wall=4.0, started=9.0)
    assert u["calls"] == 8
    assert u["whole_run"] == pytest.approx(8 / 4.0 / 4.0)
    assert u["active_window"] == pytest.approx(8 / 2.0 / 4.0)
    assert (u["generation"], u["scoring"]) == (pytest.approx(2 / 2.0 / 4.0), pytest.approx(6 / 2.0 / 4.0))
    assert u["calls_by_phase"] == {"generation": 2, "scoring": 6}
    assert (u["startup_s"], u["tail_s"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert utilization([], capacity=4.0, wall=1.0) == {"calls": 0}


@pytest.mark.parametrize("module", [throughput, speedup, scaling, adaptive])
def test_every_benchmark_has_a_help(module, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    assert f"python -m benchmarks.{module.__name__.rsplit('.', 1)[1]}" in capsys.readouterr().out


def test_the_runner_keeps_its_options() -> None:
    args = throughput.parse_args(["--tasks", "3", "--no-scaling", "--scaling-slots", "1,4"])
    assert (args.tasks, args.scaling, args.adaptive, args.scaling_slots) == (3, False, True, [1, 4])
    assert str(args.out) == "benchmarks/results/throughput.json"


SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "gpo"


@pytest.mark.skipif(not (SHARED / "BIG-Bench-Hard").is_dir(), reason=f"shared GPO data absent ({SHARED})")
def test_more_tasks_than_the_shared_data_has_are_topped_up_with_synthetic_ones(tmp_path: Path) -> None:
    workload = load_workload(30, data_dir=SHARED, scratch=tmp_path)
    assert len(workload.tasks) == len(set(workload.task_names)) == 30
    assert [n.startswith("bbh/") for n in workload.task_names] == [True] * 27 + [False] * 3
    assert workload.task_names[27:] == ["bbh_shaped/t00", "bbh_shaped/t01", "bbh_shaped/t02"]
    assert workload.source.startswith("27 shared BBH") and "3 synthetic" in workload.source


def test_past_a_hundred_synthetic_tasks_the_names_stay_distinct_and_in_order(tmp_path: Path) -> None:
    names = load_workload(101, data_dir=None, scratch=tmp_path).task_names
    assert len(set(names)) == 101 and names[:2] == ["bbh_shaped/t000", "bbh_shaped/t001"] and names == sorted(names)


def test_fairness_is_the_spread_of_completed_steps_while_the_run_goes(tmp_path: Path) -> None:
    from benchmarks.harness.fairness import ProgressSampler
    from gpo_ray.runtime.run_dir import task_file_name

    (tmp_path / "checkpoints").mkdir()
    sampler = ProgressSampler(tmp_path, ["a", "b", "c"], lambda: {})
    for lines in ({"a": 3}, {"a": 4, "b": 2}, {"a": 5, "b": 5, "c": 3}):  # step 0 and then completed steps
        for task, n in lines.items():
            (tmp_path / "checkpoints" / task_file_name(task)).write_text("{}\n" * n)
        sampler._sample()
    assert [(s["steps"], s["min"], s["max"]) for s in sampler.samples] == [(2, 0, 2), (4, 0, 3), (10, 2, 4)]
    going = sampler.report(total_steps=12)["while_running"]  # samples between 10% and 90% of 12 steps
    assert going["samples"] == 3 and going["max_spread"] == 3
