"""`gpo-ray export`: the best prompt per task as JSON or YAML, loaded back as {task: prompt} by an application."""

from __future__ import annotations

import json

import pytest
import yaml

from gpo_ray.cli import main
from gpo_ray.config import RunConfig
from gpo_ray.core.results import StepResult
from gpo_ray.errors import InputError
from gpo_ray.report import best_prompts_document, dump_best_prompts, load_best_prompts, read_run
from gpo_ray.report.export import load_best_prompts_document
from gpo_ray.runtime.run_dir import RunDirectory

AWKWARD = 'Think: step by step.\n  - then "answer" with {braces}, #hash, `tick`, ünïcödé  \nyes: no\n'


def run_with(tmp_path, *, finished: bool, placement: str = "system") -> RunDirectory:
    config = RunConfig(tasks=["a/one", "b/two"], run_dir=tmp_path / "run", optimizer={"placement": placement})
    rd = RunDirectory(config.run_dir)
    rd.create(config)
    one = [StepResult(0, 0, "Solve.", 0.25), StepResult(1, 10, AWKWARD, 0.75), StepResult(2, 9, "Solve now.", 0.5)]
    two = [StepResult(0, 0, "Answer.", 0.5), StepResult(1, 10, "Answer well.", 0.5)]  # a tie keeps the earlier
    for task, steps in (("a/one", one), ("b/two", two)):
        for s in steps:
            rd.append_step(task, s, fingerprint=config.fingerprint())
    if finished:
        rd.write_results({"status": "completed", "tasks": {
            "a/one": {"status": "completed", "best_step": 1, "best_test_score": 0.7, "initial_test_score": 0.2},
            "b/two": {"status": "completed", "best_step": 0, "best_test_score": 0.4, "initial_test_score": 0.4}}})
    return rd


def test_the_document_names_best_prompt_score_step_status_placement_and_fingerprint(tmp_path):
    rd = run_with(tmp_path, finished=True)
    doc = best_prompts_document(read_run(rd.path, resolve_data=False))
    assert doc == {
        "format": "gpo-ray/best-prompts", "version": 1,
        "run": {"fingerprint": rd.load_config().fingerprint(), "status": "completed"},
        "prompts": {
            "a/one": {"prompt": AWKWARD, "placement": "system", "eval_score": 0.75, "test_score": 0.7, "step": 1,
                      "status": "completed"},
            "b/two": {"prompt": "Answer.", "placement": "system", "eval_score": 0.5, "test_score": 0.4, "step": 0,
                      "status": "completed"},
        },
    }


def test_a_run_in_progress_exports_its_best_prompts_so_far(tmp_path):
    doc = best_prompts_document(read_run(run_with(tmp_path, finished=False).path, resolve_data=False))
    assert doc["run"]["status"] == "running"
    assert {n: (e["prompt"], e["step"], e["status"], e["test_score"]) for n, e in doc["prompts"].items()} == {
        "a/one": (AWKWARD, 1, "running", None), "b/two": ("Answer.", 0, "running", None)}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_through_a_file_keeps_every_prompt_exactly(tmp_path, fmt):
    rd = run_with(tmp_path, finished=True)
    doc = best_prompts_document(read_run(rd.path, resolve_data=False))
    path = tmp_path / f"best.{fmt}"
    path.write_text(dump_best_prompts(doc, format=fmt), encoding="utf-8")
    assert load_best_prompts_document(path) == doc
    assert load_best_prompts(path) == {"a/one": AWKWARD, "b/two": "Answer."}
    parsed = json.loads(path.read_text()) if fmt == "json" else yaml.safe_load(path.read_text())
    assert parsed == doc


def test_a_run_directory_loads_directly(tmp_path):
    assert load_best_prompts(run_with(tmp_path, finished=True).path) == {"a/one": AWKWARD, "b/two": "Answer."}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json: [", "not JSON or YAML"),
    ('{"prompts": {"t": "x"}}', "not a gpo-ray best-prompts export"),
    ('{"format": "gpo-ray/best-prompts", "version": 99, "prompts": {}}', "version 99"),
    ('{"format": "gpo-ray/best-prompts", "version": 1, "prompts": {"t": {"score": 1}}}', "'t' has no prompt"),
])
def test_a_file_that_is_not_an_export_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_best_prompts(path)
    with pytest.raises(InputError, match="cannot read"):
        load_best_prompts(tmp_path / "missing.json")


def test_export_command_prints_json_by_default_and_writes_yaml_by_suffix(tmp_path, capsys):
    rd = run_with(tmp_path, finished=True)
    assert main(["export", str(rd.path)]) == 0
    assert json.loads(capsys.readouterr().out)["prompts"]["a/one"]["prompt"] == AWKWARD
    out = tmp_path / "best.yml"
    assert main(["export", str(rd.path), "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert yaml.safe_load(out.read_text())["prompts"]["b/two"]["prompt"] == "Answer."
    assert not (rd.path / "report.html").exists() and sorted(p.name for p in rd.path.iterdir()) == [
        "cache", "checkpoints", "config.json", "logs", "results.json"], "export writes nothing into the run"


def test_export_of_a_directory_without_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no gpo-ray run" in err[0]
