"""The judge-share benchmark (benchmarks/judge_share.py, issue 24) at a tiny size on the shared local Ray cluster: its
report has the figures per role of both runs, the judge's calls are what the endpoint received for the judge, the run
with the Python stand-in scores the same without a judge call, and plan's count less what the run did not score is
the judge's calls."""

from __future__ import annotations

import pytest

from benchmarks.judge_share import ROLES, build_parser, measure, show

pytestmark = pytest.mark.usefixtures("ray_cluster")

TINY = ["--tasks", "1", "--train", "8", "--eval", "4", "--test", "4", "--epochs", "1", "--batch-size", "4",
        "--candidates", "3", "--phrases", "4", "--latency", "0.01", "--slots", "8", "--evaluators", "1",
        "--refiners", "1"]


def test_a_tiny_benchmark_reports_each_roles_share_and_the_judges_calls_are_what_the_endpoint_received(tmp_path,
                                                                                                      capsys):
    report: dict = {}
    measure(report, build_parser().parse_args(TINY), tmp_path)

    assert set(report) == {"setup", "plan", "runs", "judge"}
    judged, plain = report["runs"]["judge"], report["runs"]["python"]
    for run in (judged, plain):
        assert run["status"] == "completed" and run["steps"] == 2
        assert list(run["roles"]) == list(ROLES)
        assert sum(r["call_share"] for r in run["roles"].values()) == pytest.approx(1.0)
        assert run["wall_s"] >= run["endpoint_span_s"] > 0
        for role in ("task_model", "optimizer"):
            figures = run["roles"][role]
            assert figures["calls"] == figures["requests"] == figures["endpoint_requests"] > 0
            assert 0 < figures["busy_s"] <= run["wall_s"] and 0 < figures["busy_share"] <= 1

    judge = judged["roles"]["judge"]
    assert judge["calls"] == judge["requests"] == judge["endpoint_requests"] == judged["endpoint"]["roles"]["judge"]
    assert judge["calls"] == judged["roles"]["task_model"]["calls"]  # one judge call per scored example
    assert 0 < judge["busy_s"] <= judged["wall_s"] and judge["tokens"] > 0
    assert plain["roles"]["judge"]["calls"] == 0 and "judge" not in plain["endpoint"]["roles"]

    summary = report["judge"]
    assert summary["calls"] == summary["endpoint_requests"] == judge["calls"]
    assert summary["plan_calls"] == report["plan"]["total"]["judge_calls"] >= summary["calls"]
    assert summary["plan_less_unscored"] == summary["calls"]  # what plan counts and the run did not score, named
    assert summary["same_scores"] and summary["same_task_model_calls"]
    assert summary["wall_ratio"] == pytest.approx(judged["wall_s"] / plain["wall_s"])
    assert summary["busy_share"] == judge["busy_share"]

    show(report)
    out = capsys.readouterr().out
    assert f"judge calls: plan {summary['plan_calls']:,}, usage.json {summary['calls']:,}, endpoint received " \
           f"{summary['calls']:,}" in out
    assert "wall with the judge / with the Python metric:" in out
