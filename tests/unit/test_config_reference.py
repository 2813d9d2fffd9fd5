"""docs/configuration-reference.md is generated from the config models (gpo_ray/config/reference.py): it must be what
the generator prints today, so a field added, renamed, re-typed or re-described in gpo_ray/config/ shows up there."""

from __future__ import annotations

import difflib
from pathlib import Path

from gpo_ray.config import RunConfig
from gpo_ray.config.reference import COMMAND, render

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration-reference.md"


def test_the_committed_reference_is_what_the_models_say() -> None:
    expected = render()
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    if committed != expected:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), expected.splitlines(True),
                                                 "committed", "generated", n=1))[:40])
        raise AssertionError(f"docs/configuration-reference.md is stale; regenerate it with\n\n    {COMMAND}\n\n"
                             f"(from the repository's root) and commit it. The first differences:\n{diff}")


def test_every_field_of_every_section_is_in_the_reference() -> None:
    text = render()
    for name, info in RunConfig.model_fields.items():
        assert f"| `{info.alias or name}` |" in text
    for section in ("optimizer.schedule: ScheduleConfig", "task_sources[]: TaskSource", "cluster: ClusterSettings",
                    "task_sources[].metric: JudgeMetric", "task_sources[].metric.checks[]: JsonCheck",
                    "task_model.hedge, optimizer_model.hedge, judge_model.hedge: HedgeSettings"):
        assert f"\n## {section}\n" in text
    assert "| `temperature` |" in text and "optimizer_model: `1.0`" in text  # each role's own default is shown
    assert "paper: `eval`" in text  # what preset paper lays under the user's settings
