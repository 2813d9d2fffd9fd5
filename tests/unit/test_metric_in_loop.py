"""A task's own metric inside the GPO loop (in-process services): metric errors scored 0, counted per step and
stopping the run past budget.max_metric_errors; the metric's feedback beside each wrong example in the feedback
request; the built-in metrics' requests unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpo_ray.config import OptimizerSettings, PythonMetric, ScheduleConfig
from gpo_ray.core.evaluation import TaskModelParams, task_request
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.reference import InProcessServices
from gpo_ray.errors import MetricErrorsExceeded
from gpo_ray.tasks.metric_functions import load_metric_function
from gpo_ray.testing import ScriptedLLM
from tests.unit.test_core_loop import bag_of_words, example_task, optimizer_config, task_model_config

FLAGGED = PythonMetric(kind="python", function="tests.metric_functions:fails_when_flagged")
EXACT = PythonMetric(kind="python", function="tests.metric_functions:exact_number")


def _flagged_task(flag_file, metric=FLAGGED):
    task = example_task()
    fields = {"flag_file": str(flag_file)}

    def tagged(examples):
        return tuple(replace(e, fields=fields) for e in examples)

    return replace(task, metric=metric, train=tagged(task.train), eval=tagged(task.eval), test=tagged(task.test))


class RecordingServices(InProcessServices):
    def __init__(self) -> None:
        super().__init__(optimizer_llm=ScriptedLLM(optimizer_config()), task_llm=ScriptedLLM(task_model_config()),
                         embed=bag_of_words, task_params=TaskModelParams(), on_step=lambda t, r: self.steps.append(r))
        self.steps = []
        self.asked = []

    async def ask_optimizer(self, request):
        self.asked.append(request.text)
        return await super().ask_optimizer(request)


def loop_settings(**kw):
    return OptimizerSettings(**{"epochs": 1, "batch_size": 4, "candidates": 2, "retrieval": "recency",
                                "initial_prompt": "Answer the question.", "eval_limit": 6, "test_limit": 4,
                                "schedule": ScheduleConfig(initial=12, final=4), **kw})


async def test_an_example_the_metric_cannot_score_scores_0_and_is_counted_in_its_step(tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("eval:0\n")
    task = _flagged_task(flag)
    services = RecordingServices()
    result = await GPOTaskLoop(task, settings=loop_settings(), services=services, structured=False).run()
    initial = services.steps[0]
    assert initial.counts == {"metric_error": 1}  # the initial prompt's eval scoring met eval:0
    # eval:0 scores 0: the initial eval score is the metric applied by hand to the other examples, over all six.
    by_hand = []
    function = load_metric_function(FLAGGED.function)
    for ex in task.eval[:6]:
        reply = (await services.task_llm.complete(task_request("Answer the question.", ex, TaskModelParams()))).text
        by_hand.append(0.0 if ex.id == "eval:0" else float(function({"answer": ex.answer, "id": ex.id,
                                                                      "flag_file": str(flag)}, reply)))
    assert 0 < result.initial_eval_score == pytest.approx(sum(by_hand) / 6)
    assert all(s.counts.get("metric_error", 0) >= 1 for s in services.steps)  # every chosen prompt's eval meets it


async def test_past_max_metric_errors_the_run_stops_naming_function_example_and_error(tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("eval:0 eval:1 eval:2\n")
    services = RecordingServices()
    loop = GPOTaskLoop(_flagged_task(flag), settings=loop_settings(), services=services, structured=False,
                       max_metric_errors=2)
    with pytest.raises(MetricErrorsExceeded) as e:
        await loop.run()
    assert str(e.value) == (
        "metric tests.metric_functions:fails_when_flagged of task example/arithmetic failed on 3 examples (more than "
        "budget.max_metric_errors 2), the last on example eval:2: ValueError: cannot read the reply to eval:2")
    assert services.steps == []  # nothing half-recorded


async def test_a_metric_that_returns_out_of_range_is_an_error_too(tmp_path):
    bad = PythonMetric(kind="python", function="tests.metric_functions:out_of_range")
    services = RecordingServices()
    loop = GPOTaskLoop(_flagged_task(tmp_path / "none", metric=bad), settings=loop_settings(), services=services,
                       structured=False, max_metric_errors=0)
    with pytest.raises(MetricErrorsExceeded, match=r"example eval:\d: returned the score 1.5, outside \[0, 1\]"):
        await loop.run()


async def test_the_feedback_request_shows_the_metrics_feedback_beside_each_wrong_example(tmp_path):
    services = RecordingServices()
    await GPOTaskLoop(_flagged_task(tmp_path / "none", metric=EXACT), settings=loop_settings(direction="feedback"),
                      services=services, structured=False).run()
    (request, *_) = services.asked
    assert "<wrong_examples>" in request
    entries = request.split("<wrong_examples>")[1].split("</wrong_examples>")[0].split("\n\n")
    assert entries and all("\nWhat the metric found: the last word should be the sum " in e for e in entries)


async def test_a_built_in_metric_adds_no_feedback_line(tmp_path):
    services = RecordingServices()
    await GPOTaskLoop(example_task(), settings=loop_settings(direction="feedback"), services=services, structured=False).run()
    assert services.asked and not any("What the metric found" in text for text in services.asked)
