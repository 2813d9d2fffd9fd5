"""The design-space variants (`optimizer.direction`, `optimizer.momentum`) end to end on the shared local Ray cluster
against the fake endpoint, two steps each: the extra calls arrive at the endpoint by role (feedback, summarize, and
the task model's scoring of the current prompt on the training batch) as many as `plan` counts, are recorded per
step in the results, and what the step's meta-prompt shows is the step's feedback or carried summary."""

from __future__ import annotations

from collections import Counter

import pytest

from gpo_ray.api import optimize
from gpo_ray.core.plan import plan_task
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, sequential_results
from tests.integration.test_e2e_update_budget import variant_config
from tests.integration.usage_checks import assert_sent_with_metadata

pytestmark = pytest.mark.usefixtures("ray_cluster")

# (style, direction, momentum content, momentum update): every content and update, each style with and without the
# feedback direction.
VARIANTS = [
    ("paper", "feedback", "prompts", "retrieve"),
    ("paper", "feedback", "feedback", "summarize"),
    ("paper", "none", "prompts", "summarize"),
    ("own", "feedback", "feedback", "retrieve"),
    ("own", "feedback", "prompts", "summarize"),
    ("own", "feedback", "none", "retrieve"),
]


def _config(tmp_path, base_url: str, style: str, direction: str, content: str, update: str):
    base = variant_config(tmp_path, base_url, style, "generate", True)
    optimizer = base.optimizer.model_copy(update={"direction": direction}).model_dump(mode="json")
    optimizer["momentum"] = {"content": content, "update": update}
    data = base.model_dump(mode="json") | {"optimizer": optimizer}
    return type(base).model_validate(data)


@pytest.mark.parametrize(("style", "direction", "content", "update"), VARIANTS)
def test_variant_makes_the_planned_extra_calls_and_records_them(tmp_path, style, direction, content, update):
    config = _config(tmp_path, "http://placeholder/v1", style, direction, content, update)
    phrases = [f"Work carefully, check {i}." for i in range(200)]  # every step's 8 candidates are new
    fake_settings = fake_config(config).model_copy(update={"record_requests": True, "optimizer_phrases": phrases})
    with ThreadedFake(fake_settings) as fake:
        config = _config(tmp_path, fake.base_url, style, direction, content, update)
        results = optimize(config)
        log = fake.requests_log()

    s = config.optimizer
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    steps = results.tasks["sums/a"].steps
    assert len(steps) == 2
    plan = plan_task(task, s, optimizer_max_tokens=config.optimizer_model.max_tokens or 512,
                     task_max_tokens=config.task_model.max_tokens)
    sent = assert_sent_with_metadata(log)
    assert (("optimizer", "feedback") in sent) == (direction == "feedback")
    assert (("optimizer", "summarize") in sent) == (update == "summarize")
    by_role = Counter(r["role"] for r in log)
    assert by_role["feedback"] == plan.feedback_calls == (2 if direction == "feedback" else 0)
    assert by_role["summarize"] == plan.summarize_calls == (1 if update == "summarize" else 0)
    assert by_role["optimizer"] == plan.optimizer_calls - plan.feedback_calls - plan.summarize_calls == 16
    assert by_role["task"] == plan.task_model_calls == results.usage["task_model"]["requests"]
    assert results.usage["optimizer"]["requests"] == plan.optimizer_calls
    # The paper preset traces the current prompt on each step's training batch (trace_scores) and, as the official
    # loop, asks its feedback from those replies: no scoring of its own.
    traced = s.trace_scores
    assert traced == (style == "paper")
    feedback_scored = 8 if direction == "feedback" and not traced else 0
    assert plan.feedback_scoring_calls == feedback_scored * (2 if style == "paper" else 1)
    assert plan.trace_scoring_calls == (2 * (8 + 3 * len(task.test)) if traced else 0)  # 2 batches of 4, 3 prompts

    # Per step in the results: the extra calls, the feedback, the carried summary.
    assert [st.counts.get("feedback_calls", 0) for st in steps] == [int(direction == "feedback")] * 2
    assert [st.counts.get("summarize_calls", 0) for st in steps] == [0, int(update == "summarize")]
    assert sum(st.counts.get("feedback_scoring_calls", 0) for st in steps) == feedback_scored
    assert all((st.feedback is not None) == (direction == "feedback") for st in steps)
    assert all((st.momentum is not None) == (update == "summarize") for st in steps)

    # The temperature-0 requests are the official ones; the candidates' meta-prompts show what the step kept.
    extra = [r for r in log if r["role"] in ("feedback", "summarize")]
    assert all(r["temperature"] == 0.0 for r in extra)
    candidates = [r["text"] for r in log if r["role"] == "optimizer"]
    for st in steps:
        shown = [t for t in candidates if st.feedback is None or st.feedback in t]
        if direction == "feedback" and not (content == "feedback" and update == "summarize"):
            assert len(shown) >= 8, "each candidate request of the step shows the step's feedback"
        if update == "summarize":
            assert sum(st.momentum in t for t in candidates) >= 8
    if style == "paper" and direction == "feedback":
        assert all(r["text"].startswith("Your task is to point out the problems with the current prompt")
                   for r in log if r["role"] == "feedback")


def test_a_feedback_variant_agrees_with_the_sequential_reference(tmp_path):
    args = ("own", "feedback", "feedback", "summarize")
    config = _config(tmp_path, "http://placeholder/v1", *args)
    with ThreadedFake(fake_config(config)) as fake:
        config = _config(tmp_path, fake.base_url, *args)
        results = optimize(config)
        reference = sequential_results(config, fake.base_url)
    assert results.tasks == reference
    assert all(st.feedback and st.momentum for st in results.tasks["sums/a"].steps)
