"""What every run's usage must satisfy, whoever ran it (issue 23): usage.json, results.json's usage and the report's
usage table are one set of counts, equal to what the fake endpoint received; no actor's counts were carried over as
if it had restarted."""

from __future__ import annotations

import json
from pathlib import Path

from gpo_ray.report.run_view import read_run
from gpo_ray.report.tables import usage_rows
from gpo_ray.vocabulary import Purpose

# The fake's reply roles of each of the run's roles.
ENDPOINT_ROLES = {"optimizer": ("optimizer", "feedback", "summarize"), "task_model": ("task",), "judge": ("judge",)}


def driver_events(run_dir: Path, event: str) -> list[dict]:
    lines = (run_dir / "logs" / "driver.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def assert_files_agree_with_the_endpoint(run_dir: Path, endpoint: dict) -> dict:
    """usage.json == results.json's usage == the report's table, and == what the endpoint received. Returns usage."""
    usage = json.loads((run_dir / "usage.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["usage"] == usage
    assert driver_events(run_dir, "usage_counter_reset") == [], "no actor restarted: nothing may be carried over"
    for role, fake_roles in ENDPOINT_ROLES.items():
        if role == "judge" and role not in usage:  # a run without a judge metric has no judge role
            assert endpoint["roles"].get("judge", 0) == 0
            continue
        u = usage[role]
        assert u["requests"] == sum(endpoint["roles"].get(r, 0) for r in fake_roles), role
        assert u["retries"] == 0 and u["errors"] == {}, role
        assert u["calls"] == u["requests"] + u["cache_hits"], f"{role}: a call is a request or a cache hit, once"
    assert sum(u["prompt_tokens"] for u in usage.values()) == endpoint["prompt_tokens"]
    assert sum(u["completion_tokens"] for u in usage.values()) == endpoint["completion_tokens"]
    rows = {row[0].split(" ")[0]: row for row in usage_rows(read_run(run_dir, resolve_data=False))}
    for role, u in usage.items():
        assert rows[role][1:3] == [f"{u['calls']:,}", f"{u['requests']:,}"], role
        assert rows[role][6] == f"{u['cache_hits']:,}", role
    return usage


# The fake's reply role for each purpose (X-GPO-Purpose).
MODEL_OF_PURPOSE = {"answer": "task", "second_turn": "task", "candidates": "optimizer", "feedback": "feedback",
                    "summarize": "summarize", "judge": "judge"}


def assert_sent_with_metadata(log: list[dict]) -> set[tuple[str, str]]:
    """Every request a run sent (the fake's request log) named its role and purpose in its headers, consistent with
    each other, and the fake answered it by them, not by its prose. Returns the (role, purpose) pairs seen."""
    assert log, "record_requests must be on"
    for r in log:
        assert r["sent_purpose"] is not None and Purpose(r["sent_purpose"]).role == r["sent_role"], r
        assert r["routed_by"] == "purpose" and r["role"] == MODEL_OF_PURPOSE[r["sent_purpose"]], r
    return {(r["sent_role"], r["sent_purpose"]) for r in log}
