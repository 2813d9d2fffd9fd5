"""Bad input of every kind - configs, command lines, dataset lines, damaged or foreign run directories - is
refused with one line that names what is wrong, exit code 2, no traceback, and nothing written.

Property-based (hypothesis); no Ray: the CLI runs in-process with the run itself (`gpo_ray.api._execute`)
replaced by a stub, so a command line that happens to be valid is accepted without starting anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gpo_ray.api as api
from gpo_ray.cli import main
from gpo_ray.config import RunConfig, load_config
from gpo_ray.core.results import StepResult
from gpo_ray.errors import ConfigError, DataError
from gpo_ray.runtime.run_dir import RunDirectory, task_file_name
from gpo_ray.tasks.loaders import load_jsonl_split

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ----------------------------------------------------------------------------------

FIELDS = ["tasks", "data_dir", "task_sources", "task_model", "optimizer_model", "optimizer", "cluster", "budget",
          "run_dir", "cache", "base_url", "model", "api_key_env", "temperature", "max_tokens", "timeout_s",
          "max_retries", "epochs", "batch_size", "candidates", "schedule", "kind", "initial", "final",
          "retrieval", "placement", "seed", "name", "format", "path", "metric", "num_refiners", "max_calls"]
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=12))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["example/arithmetic", "cosine", "fixed", "end", "0", "-1", "1e9", "", "*"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
config_dicts = st.dictionaries(keys, values, max_size=6)


def one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message.strip() and "Traceback" not in message


# --- configs -------------------------------------------------------------------------------------


@FAST
@given(config_dicts)
@example({"tasks": ["example/arithmetic"], "optimizer": {"epochs": 0}})
@example({"tasks": [], "cluster": {"num_evaluators": -1}})
@example({"tasks": ["x"], "optimizer": {"schedule": {"initial": 1, "final": 5}}})
@example({"tasks": ["x"], "task_model": {"api_key_env": "sk-not-a-name"}})
@example({"tasks": ["x"], "bad\nkey": 1})
@example({"tasks": ["x"], "task_sources": 3})
@example({"tasks": ["x"], "data_dir": "a\x00b"})
def test_any_config_dict_validates_or_is_refused_naming_the_field(data):
    """(One line is the CLI's job: a key with a newline in it is printed escaped - see the command lines.)"""
    try:
        config = load_config(None, overrides=data)
    except ConfigError as e:
        assert str(e).startswith("invalid config: ") and "Traceback" not in str(e), str(e)
        return
    assert isinstance(config, RunConfig)


@FAST
@given(st.one_of(st.text(max_size=200), config_dicts.map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
@example("tasks: [example/arithmetic\noptimizer: {epochs: 2")
@example("- just\n- a list\n")
@example("tasks: !!python/object:os.system ls\n")
@example("\t\x00")
def test_any_yaml_file_validates_or_is_refused_naming_the_file_or_field(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as e:
            assert str(e).startswith((str(path), "invalid config: ")), str(e)
            return
        assert isinstance(config, RunConfig)


def test_a_config_file_that_is_not_utf8_is_refused_in_one_line(tmp_path, no_runs):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"tasks: [\xff\xfe]\n")
    code, err = run_cli(["plan", str(path)])
    assert code == 2 and one_line(err) and str(path) in err, err


@pytest.mark.parametrize("setting", ['data_dir: "a\\0b"', 'task_sources: [{name: x/y, path: "p\\0q"}]'])
def test_a_config_path_with_a_nul_byte_is_refused_in_one_line(tmp_path, no_runs, setting):
    path = tmp_path / "run.yaml"
    path.write_text(f"tasks: [example/arithmetic]\n{setting}\n")
    code, err = run_cli(["plan", str(path)])
    assert code == 2 and one_line(err), err


def test_task_sources_that_is_a_number_is_refused_in_one_line(tmp_path, no_runs):
    path = tmp_path / "run.yaml"
    path.write_text("tasks: [example/arithmetic]\ntask_sources: 1\n")
    code, err = run_cli(["plan", str(path)])
    assert code == 2 and one_line(err) and "task_sources" in err, err


# --- command lines -------------------------------------------------------------------------------

FLAGS = ["--task", "--data-dir", "--epochs", "--candidates", "--batch-size", "--seed", "--base-url", "--model",
         "--api-key-env", "--optimizer-base-url", "--optimizer-model", "--run-dir", "--address", "--refiners",
         "--evaluators", "--quiet", "--json-logs", "--json", "--bogus"]
tokens = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(["example/arithmetic", "example/*", "bbh/navigate", "0", "-3", "2", "x", "", "run", "cfg.yaml",
                     "http://127.0.0.1:9/v1", "OPENAI_API_KEY", "sk-abc"]),
    st.text(alphabet=string.printable + "\x00\x1b\u2028é", max_size=10),
)
argvs = st.tuples(st.sampled_from(["plan", "optimize", "resume", "nope"]), st.lists(tokens, max_size=8))


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


@pytest.fixture
def no_runs(monkeypatch):
    """A valid `optimize` gets as far as the run itself, which is stubbed out."""
    started: list[RunConfig] = []

    def stub(config, run_dir, tasks, **kwargs):
        started.append(config)
        return api.Results(run_dir=run_dir.path, status="completed", tasks={}, usage={})

    monkeypatch.setattr(api, "_execute", stub)
    return started


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argvs, st.one_of(st.none(), st.text(max_size=120), config_dicts.map(yaml.safe_dump)))
@example(("optimize", ["--task", "example/arithmetic", "--epochs", "0", "--run-dir", "run"]), None)
@example(("optimize", ["cfg.yaml", "--run-dir", "run"]), "tasks: [example/arithmetic]\noptimizer: {epochs: -1}\n")
@example(("optimize", ["--task", "no/such-task", "--run-dir", "run"]), None)
@example(("optimize", ["--task", "example/arithmetic", "--api-key-env", "sk-abc", "--run-dir", "run"]), None)
@example(("resume", ["run"]), None)
@example(("optimize", ["--task", "example/arithmetic", "--run-dir", "r\x00"]), None)
@example(("optimize", ["--task", "example/arithmetic", "--data-dir", "d\x00"]), None)
@example(("plan", ["\n"]), None)
def test_any_command_line_runs_or_is_refused_in_one_line(no_runs, argv, config_text):
    command, rest = argv
    with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
        if config_text is not None:
            Path("cfg.yaml").write_text(config_text, encoding="utf-8")
        before = set(os.listdir("."))
        started = len(no_runs)
        code, err = run_cli([command, *rest])
        after = set(os.listdir("."))
        assert "Traceback" not in err, err
        if code == 0:
            return
        assert code == 2, (code, err)
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and errors[0] == lines[-1], err  # argparse adds its usage lines before it
        assert len(no_runs) == started, "a refused command started nothing"
        if command == "optimize":
            assert after == before, f"a refused optimize wrote {sorted(after - before)}"


def test_optimize_with_a_bad_config_creates_no_run_dir(no_runs, tmp_path):
    cfg = tmp_path / "run.yaml"
    run_dir = tmp_path / "run"
    cfg.write_text(f"tasks: [example/arithmetic]\noptimizer: {{candidates: 0}}\nrun_dir: {run_dir}\n")
    code, err = run_cli(["optimize", str(cfg)])
    assert code == 2 and one_line(err) and "optimizer.candidates" in err, err
    assert not run_dir.exists()
    code, err = run_cli(["optimize", "--task", "example/arithmetic", "--run-dir", str(run_dir)])
    assert code == 0 and len(no_runs) == 1 and run_dir.is_dir()  # the same command, valid: the run dir is made


# --- dataset lines -------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
records = st.fixed_dictionaries({}, optional={"input": json_values, "target": json_values, "output": json_values})
lines = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    records.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@FAST
@given(st.lists(lines, max_size=6))
@example([b'{"input": "1+1", "target": 2}', b"", b'{"input": "2+2"}'])
@example([b'{"input": "q", "target": ' + b"9" * 5000 + b"}"])
@example([b"[" * 100_000])
@example([b'{"input": "q", "target": "a"}\r', b"\xef\xbb\xbf"])
def test_any_dataset_lines_load_or_are_refused_in_one_line(raw_lines):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.jsonl"
        path.write_bytes(b"\n".join(raw_lines))
        try:
            examples = load_jsonl_split(path, id_prefix="train")
        except DataError as e:
            assert one_line(str(e)), str(e)
            assert str(e).startswith(str(path)), str(e)
            return
    for ex in examples:
        assert ex.input.strip() and ex.answers and all(isinstance(a, str) and a.strip() for a in ex.answers)


# --- run directories that must not be resumed ----------------------------------------------------

TASK = "example/arithmetic"


def make_run(tmp_path: Path, *, steps: int = 3) -> tuple[Path, RunConfig]:
    config = load_config(None, overrides={
        "tasks": [TASK], "run_dir": str(tmp_path / "run"),
        "task_model": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
        "optimizer_model": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    })
    run_dir = RunDirectory(config.run_dir)
    run_dir.create(config)
    for step in range(steps):
        run_dir.append_step(TASK, StepResult(step=step, edit_budget=10, prompt=f"prompt {step}", eval_score=0.5),
                            fingerprint=config.fingerprint())
    return run_dir.path, config


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def edit_config(run: Path, config: RunConfig) -> None:
    doc = json.loads((run / "config.json").read_text())
    doc["config"]["optimizer"]["epochs"] = 7  # another config, same run directory
    (run / "config.json").write_text(json.dumps(doc))


def foreign_checkpoint(run: Path, config: RunConfig) -> None:
    other = config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"seed": 99})})
    path = run / "checkpoints" / task_file_name(TASK)
    lines = path.read_text().splitlines()
    lines[1] = json.dumps(json.loads(lines[1]) | {"fp": other.fingerprint()})
    path.write_text("\n".join(lines) + "\n")


def corrupt_checkpoint(run: Path, config: RunConfig) -> None:
    path = run / "checkpoints" / task_file_name(TASK)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # damage in the middle, not a torn tail
    path.write_text("\n".join(lines) + "\n")


def drop_a_step(run: Path, config: RunConfig) -> None:
    path = run / "checkpoints" / task_file_name(TASK)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")


def damage_config(run: Path, config: RunConfig) -> None:
    (run / "config.json").write_text('{"fingerprint": "x", "config": ')


def remove_config(run: Path, config: RunConfig) -> None:
    (run / "config.json").unlink()


@pytest.mark.parametrize(("damage", "message"), [
    (edit_config, "fingerprint mismatch"),
    (foreign_checkpoint, "belongs to a different config"),
    (corrupt_checkpoint, "corrupted checkpoint"),
    (drop_a_step, "not contiguous"),
    (damage_config, "is damaged"),
    (remove_config, "holds no gpo-ray run"),
])
def test_resume_refuses_a_damaged_or_foreign_run(tmp_path, no_runs, damage, message):
    run, config = make_run(tmp_path)
    damage(run, config)
    before = snapshot(run)
    code, err = run_cli(["resume", str(run)])
    assert code == 2 and one_line(err), err
    assert message in err and str(run) in err, err
    assert not no_runs, "nothing was started"
    assert snapshot(run) == before, "nothing was written"


def test_optimize_into_a_run_dir_of_another_config_is_refused(tmp_path, no_runs):
    run, _ = make_run(tmp_path)
    before = snapshot(run)
    code, err = run_cli(["optimize", "--task", TASK, "--epochs", "1", "--run-dir", str(run)])
    assert code == 2 and one_line(err), err
    assert "already holds a run" in err and "resume" in err, err
    assert not no_runs and snapshot(run) == before
