"""The README's "Your own task" walkthrough, as shipped in gpo_ray/examples/triage/ (example:triage): its config validates, its CSV is carved
into the splits it says, and its metric scores and explains as the README shows."""

from __future__ import annotations

import json

from gpo_ray.cli import main
from gpo_ray.config import load_config
from gpo_ray.examples import EXAMPLES_HOME
from gpo_ray.tasks.metric_functions import load_metric_function
from gpo_ray.tasks.registry import resolve_tasks

EXAMPLE = EXAMPLES_HOME / "triage"


def test_the_shipped_triage_task_loads_as_the_readme_says():
    config = load_config(EXAMPLE / "triage.yaml")
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    assert (len(task.train), len(task.eval), len(task.test)) == (20, 20, 20)
    first = task.eval[0]
    assert first.input.startswith("Ticket: ") and "\n" in first.input  # the template over subject and body
    assert first.answers[0] in {"billing", "tech", "sales"} and first.fields["ticket_id"] == first.id


def test_the_shipped_metric_scores_and_explains(capsys):
    score = load_metric_function(f"{EXAMPLE / 'triage_metric.py'}:score")
    row = {"team": "tech"}
    assert score(row, "Tech.") == 1.0
    assert score(row, "the tech team") == (0.5, "names tech but says more than the team's name")
    assert score(row, "billing")[0] == 0.0
    assert main(["plan", str(EXAMPLE / "triage.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["tasks"]["support/triage"]
    assert (plan["steps"], plan["optimizer_calls"]) == (2, 10)  # 20 training tickets in batches of 10; 4 + feedback
