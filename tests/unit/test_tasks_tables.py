"""A user's tables as tasks: CSV, JSONL, Parquet and Hugging Face datasets, named splits or a seeded carve, input
templates, one/several/no references, ids, the row's columns kept, per-task placement, and bad input as one line."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from gpo_ray.config import OptimizerSettings, RunConfig, TaskSource, load_config
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import settings_for_task
from gpo_ray.core.reference import InProcessServices
from gpo_ray.errors import ConfigError, DataError
from gpo_ray.llm.protocol import ChatRequest, ChatResponse
from gpo_ray.tasks.loaders import examples_from_table, load_table_source
from gpo_ray.tasks.metrics import score
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.tables import read_csv
from gpo_ray.tasks.types import Task
from gpo_ray.vocabulary import MetricKind, PromptPlacement

HEADER = ["ticket_id", "subject", "body", "team", "priority"]


def tickets(n: int, *, start: int = 0) -> list[list[str]]:
    return [[f"T{i}", f"subject {i}", f"body {i}", "billing" if i % 2 else "tech", str(i % 3)]
            for i in range(start, start + n)]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_split_folder(folder: Path, suffix: str = "csv", n: int = 3) -> Path:
    for k, split in enumerate(("train", "eval", "test")):
        write_csv(folder / f"{split}.{suffix}", tickets(n, start=10 * k))
    return folder


def source(path: Path, **settings) -> TaskSource:
    return TaskSource(**{"name": "triage", "format": "csv", "path": path, "input_field": "body",
                         "answer_field": "team", **settings})


# --- CSV -------------------------------------------------------------------------------------


def test_csv_folder_of_named_splits_keeps_every_column_and_numbers_ids(tmp_path: Path) -> None:
    task = load_table_source(source(write_split_folder(tmp_path / "t")))
    assert (len(task.train), len(task.eval), len(task.test)) == (3, 3, 3)
    first = task.eval[0]
    assert (first.input, first.answers, first.id) == ("body 10", ("tech",), "eval:0")
    assert first.fields == {"ticket_id": "T10", "subject": "subject 10", "body": "body 10", "team": "tech",
                            "priority": "1"}
    assert task.metric is MetricKind.EXACT_MATCH and task.placement is None


def test_csv_named_splits_may_use_other_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    for stem in ("fit", "dev", "holdout"):
        write_csv(folder / f"{stem}.csv", tickets(2))
    task = load_table_source(source(folder, splits={"train": "fit", "eval": "dev", "test": "holdout"}))
    assert len(task.test) == 2
    with pytest.raises(DataError, match=r"task 'triage': missing train\.csv, eval\.csv, test\.csv in .*t \(or give"):
        load_table_source(source(folder))


def test_one_csv_is_carved_by_a_seeded_shuffle_stable_across_loads(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "all.csv", tickets(20))
    carved = source(path, train_size=5, eval_size=4, split_seed=7)
    task = load_table_source(carved)
    assert (len(task.train), len(task.eval), len(task.test)) == (5, 4, 11)
    ids = [e.id for e in task.train + task.eval + task.test]
    assert sorted(ids) == sorted(f"row:{i}" for i in range(1, 21))  # the row in the file, whichever split
    assert load_table_source(carved) == task
    # The model of the carve is bbh_json's: the same seed picks the same rows.
    assert [e.id for e in task.eval] == [e.id for e in load_table_source(carved).eval]
    other = load_table_source(carved.model_copy(update={"split_seed": 8}))
    assert [e.id for e in other.train] != [e.id for e in task.train]
    with pytest.raises(DataError, match=r"task 'triage': .*all\.csv has 20 examples.* at least 21"):
        load_table_source(source(path, train_size=10, eval_size=10))


def test_carve_is_the_same_as_on_every_machine(tmp_path: Path) -> None:
    """Pinned: a change in the carve would silently change every user's splits (and their resumes)."""
    task = load_table_source(source(write_csv(tmp_path / "all.csv", tickets(10)), train_size=3, eval_size=3))
    assert [e.id for e in task.train] == ["row:8", "row:9", "row:2"]  # random.Random(0).shuffle of rows 1..10


def test_input_template_over_several_columns(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    task = load_table_source(source(folder, input_template="Ticket: {subject}\n{body}\n(priority {priority})"))
    assert task.train[1].input == "Ticket: subject 1\nbody 1\n(priority 1)"


def test_template_column_the_file_lacks_is_one_config_line_listing_its_columns(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    with pytest.raises(ConfigError) as e:
        load_table_source(source(folder, input_template="Ticket: {subjct}\n{body}"))
    line = str(e.value)
    assert "\n" not in line
    assert "input_template names column 'subjct'" in line and "train.csv" in line
    assert "(its columns: ticket_id, subject, body, team, priority)" in line


def test_missing_value_in_a_template_column_names_file_and_line(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    write_csv(folder / "eval.csv", [["T1", "s", "b", "tech", "1"], ["T2", "", "b", "tech", "1"]])
    with pytest.raises(DataError, match=r"eval\.csv:3: column 'subject' \(input_template\) is empty$"):
        load_table_source(source(folder, input_template="{subject}: {body}"))


def test_csv_row_with_the_wrong_number_of_values_names_file_and_line(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    (folder / "test.csv").write_text("subject,body,team\na,b,c\n\"multi\nline\",b,c\nd,e\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.csv:5: 2 values, but the header has 3 columns$"):
        read_csv(folder / "test.csv")


def test_csv_quoted_fields_commas_new_lines_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('\ufeffbody,team\n"refund, please","bill\ning"\n\n"x ""y""",tech\n', encoding="utf-8")
    table = read_csv(path)
    assert table.columns == ("body", "team")
    assert [r.values for r in table.rows] == [{"body": "refund, please", "team": "bill\ning"},
                                              {"body": 'x "y"', "team": "tech"}]
    assert [r.where for r in table.rows] == [f"{path}:3", f"{path}:5"]


@pytest.mark.parametrize(("text", "problem"), [
    ("", r"empty file, expected a header row"),
    ("a,a\n1,2\n", r":1: column 'a' appears twice in the header"),
    ("a,\n1,2\n", r":1: column 2 of the header has no name"),
])
def test_csv_bad_header(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=problem):
        read_csv(path)


def test_empty_split_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    write_csv(folder / "eval.csv", [])
    with pytest.raises(DataError, match=r"task 'triage': split 'eval' is empty \(.*eval\.csv\)"):
        load_table_source(source(folder))


# --- references and ids ----------------------------------------------------------------------


def test_several_reference_columns_make_a_json_answer_and_stay_in_fields(tmp_path: Path) -> None:
    task = load_table_source(source(write_split_folder(tmp_path / "t"), answer_field=None,
                                    answer_fields=["team", "priority"]))
    example = task.train[2]
    assert json.loads(example.answer) == {"team": "tech", "priority": "2"}
    assert list(json.loads(example.answer)) == ["team", "priority"]  # in the order given
    assert (example.fields["team"], example.fields["priority"]) == ("tech", "2")
    # The documented choice: exact_match compares the reply with that object (spacing aside).
    assert score(MetricKind.EXACT_MATCH, '{"team":"tech","priority":"2"}', example) == 1.0
    assert score(MetricKind.EXACT_MATCH, '{"team": "billing", "priority": "2"}', example) == 0.0


def test_no_reference_gives_examples_without_answers_and_a_builtin_metric_says_it_needs_one(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    unreferenced = source(folder, answer_field=None)
    table = read_csv(folder / "train.csv")
    examples = examples_from_table(table, unreferenced, id_prefix="train")
    assert [e.answers for e in examples] == [(), (), ()] and examples[0].fields["team"] == "tech"
    with pytest.raises(ConfigError, match=r"task 'triage' has no reference \(answer_field: null\), but its metric "
                                          r"\(exact_match\) compares each reply to one"):
        load_table_source(unreferenced.model_copy(update={"metric": MetricKind.EXACT_MATCH}))
    with pytest.raises(ConfigError, match=r"metric \(inferred from the answers\)"):
        load_table_source(unreferenced)


def test_id_field_gives_ids_and_duplicates_are_an_error(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    task = load_table_source(source(folder, id_field="ticket_id"))
    assert [e.id for e in task.eval] == ["T10", "T11", "T12"]
    write_csv(folder / "test.csv", tickets(2, start=10))  # T10, T11 again
    with pytest.raises(DataError, match=r"id 'T10' \(id_field 'ticket_id'\) appears twice"):
        load_table_source(source(folder, id_field="ticket_id"))


def test_unknown_answer_or_id_column_names_the_setting(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    with pytest.raises(ConfigError, match=r"answer_fields names column 'tema'"):
        load_table_source(source(folder, answer_field=None, answer_fields=["tema"]))
    with pytest.raises(ConfigError, match=r"id_field names column 'id', which .*train\.csv does not have"):
        load_table_source(source(folder, id_field="id"))


# --- JSONL -----------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_one_jsonl_file_is_carved_with_a_template(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "all.jsonl", [{"q": f"q{i}", "ctx": f"c{i}", "a": i} for i in range(12)])
    task = load_table_source(TaskSource(name="j", format="jsonl", path=path, input_template="{ctx} / {q}",
                                        answer_field="a", train_size=4, eval_size=4))
    assert len(task.test) == 4
    one = next(e for e in task.train + task.eval + task.test if e.id == "row:3")
    assert (one.input, one.answers, one.fields["a"]) == ("c2 / q2", ("2",), 2)


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    path.write_text('{"input": "a", "target": "b"}\n{"input": "a", "target": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"all\.jsonl:2: not valid JSON"):
        load_table_source(TaskSource(name="j", format="jsonl", path=path))


# --- Parquet ---------------------------------------------------------------------------------


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_named_splits_keep_typed_values(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    for split in ("train", "eval", "test"):
        write_parquet(folder / f"{split}.parquet",
                      [{"text": f"{split} {i}", "refs": [f"r{i}", f"s{i}"], "n": i} for i in range(2)])
    task = load_table_source(TaskSource(name="p", format="parquet", path=folder, input_field="text",
                                        answer_field="refs", metric=MetricKind.ROUGE_L))
    assert task.test[1].answers == ("r1", "s1")  # a list column: several references
    assert task.test[1].fields["n"] == 1


def test_parquet_carve_and_row_numbers_in_errors(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "yes" if i % 2 else "no"} for i in range(10)]
    path = write_parquet(tmp_path / "all.parquet", rows)
    task = load_table_source(TaskSource(name="p", format="parquet", path=path, input_field="text",
                                        answer_field="label", train_size=3, eval_size=3))
    assert len(task.test) == 4
    rows[4]["label"] = None
    write_parquet(path, rows)
    with pytest.raises(DataError, match=r"all\.parquet: row 5: column 'label' \(answer_field\) is empty$"):
        load_table_source(TaskSource(name="p", format="parquet", path=path, input_field="text",
                                     answer_field="label", train_size=3, eval_size=3))
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(DataError, match=r"all\.parquet: not a readable Parquet file"):
        load_table_source(TaskSource(name="p", format="parquet", path=path, train_size=3, eval_size=3))


# --- Hugging Face (the tests that need the datasets package: test_tasks_tables_hf.py) ------------------------


def test_hf_without_the_datasets_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ConfigError, match=r"^task 'h': format hf needs the datasets package: "
                                          r"pip install 'gpo-ray\[hf\]'$"):
        load_table_source(TaskSource(name="h", format="hf", path=tmp_path))


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "problem"), [
    ({"format": "hf"}, "format hf needs one of path"),
    ({"format": "hf", "path": "x", "dataset": "a/b"}, "format hf needs one of path"),
    ({"format": "csv"}, "format csv needs path"),
    ({"format": "csv", "path": "x", "dataset": "a/b"}, "dataset and subset are for format hf"),
    ({"format": "csv", "path": "x", "input_template": "{0}"}, r"input_template field \{0\} must be a column name"),
    ({"format": "csv", "path": "x", "input_template": "no fields"}, "input_template names no column"),
    ({"format": "csv", "path": "x", "input_template": "{a"}, "input_template is not a str.format template"),
    ({"format": "csv", "path": "x", "splits": {"train": "a"}}, "splits needs all of train, eval and test"),
    ({"format": "csv", "path": "x", "answer_field": "a", "answer_fields": ["b"]}, "not both"),
    ({"format": "csv", "path": "x", "placement": "middle"}, "placement"),
])
def test_task_source_settings_are_checked_once_at_the_edge(settings: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as e:
        load_config(overrides={"tasks": ["t"], "task_sources": [{"name": "t", **settings}]})
    assert "\n" not in str(e.value)


def test_new_settings_at_their_defaults_leave_the_fingerprint_as_it_was(tmp_path: Path) -> None:
    """A run with task_sources made before these settings existed still resumes: its config dump is unchanged."""
    config = RunConfig(tasks=["t"], task_sources=[TaskSource(name="t", format="jsonl", path=tmp_path)])
    assert set(config.public_dict()["task_sources"][0]) == {
        "name", "format", "path", "input_field", "answer_field", "metric", "train_size", "eval_size", "split_seed"}


def test_registry_resolves_table_sources_with_their_placement(tmp_path: Path) -> None:
    folder = write_split_folder(tmp_path / "t")
    bbh = tmp_path / "nav.json"
    bbh.write_text(json.dumps({"examples": [{"input": f"q{i}", "target": "Yes"} for i in range(5)]}), encoding="utf-8")
    sources = [source(folder, placement="system"), source(folder, name="parked", format="csv"),
               TaskSource(name="nav", format="bbh_json", path=bbh, train_size=2, eval_size=2, placement="beginning")]
    nav, parked, triage = resolve_tasks(["triage", "nav", "parked"], data_dir=None, sources=sources)
    assert (triage.placement, nav.placement, parked.placement) == (PromptPlacement.SYSTEM,
                                                                   PromptPlacement.BEGINNING, None)


# --- where the prompt goes -------------------------------------------------------------------


class RecordingLLM:
    """An LLM client that answers "tech" and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(text="tech")


async def test_a_tasks_system_placement_sends_the_prompt_as_the_system_message(tmp_path: Path) -> None:
    task = load_table_source(source(write_split_folder(tmp_path / "t"), placement="system"))
    llm = RecordingLLM()
    services = InProcessServices(optimizer_llm=llm, task_llm=llm, embed=None,
                                 task_params=TaskModelParams(placement=PromptPlacement.END))
    (scores,) = await services.score(task, ["Route the ticket."], task.eval[:1])
    assert scores == [1.0]
    (request,) = llm.requests
    assert [(m.role, m.content) for m in request.messages] == [("system", "Route the ticket."),
                                                               ("user", "body 10")]
    # A task without its own placement keeps the run's.
    plain = Task(name="x", metric=MetricKind.EXACT_MATCH, train=task.train, eval=task.eval, test=task.test)
    await services.score(plain, ["Route the ticket."], task.eval[:1])
    assert [(m.role, m.content) for m in llm.requests[1].messages] == [("user", "body 10\nRoute the ticket.")]


def test_a_tasks_placement_reaches_the_loop_settings_and_paper_style_refuses_system(tmp_path: Path) -> None:
    task = load_table_source(source(write_split_folder(tmp_path / "t"), placement="beginning"))
    assert settings_for_task(task, OptimizerSettings()).placement is PromptPlacement.BEGINNING
    plain = OptimizerSettings()
    assert settings_for_task(Task("x", MetricKind.EXACT_MATCH, (), (), ()), plain) is plain
    system = load_table_source(source(write_split_folder(tmp_path / "t"), placement="system"))
    paper = OptimizerSettings(meta_prompt_style="paper")
    with pytest.raises(ConfigError, match=r"task 'triage': placement system, but meta_prompt_style paper"):
        settings_for_task(system, paper)


class RecordingEvaluators:
    """The evaluator pool's shape: keeps the keyword arguments of every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def score(self, task, metric, prompts, examples, **kwargs):
        self.calls.append(kwargs)
        return [[1.0] * len(examples) for _ in prompts]

    async def score_with_predictions(self, task, metric, prompt, examples, **kwargs):
        self.calls.append(kwargs)
        return [(1.0, "tech")] * len(examples)


async def test_actor_services_send_a_tasks_own_placement_and_leave_the_others_alone(tmp_path: Path) -> None:
    from gpo_ray.controller.services import ActorServices

    run_params = TaskModelParams(placement=PromptPlacement.END, temperature=0.0)
    evaluators = RecordingEvaluators()
    services = ActorServices(memory=None, refiners=None, evaluators=evaluators,  # type: ignore[arg-type]
                             on_step=None, should_stop=lambda: False, run_dir="/runs/x",  # type: ignore[arg-type]
                             task_params=run_params)
    placed = load_table_source(source(write_split_folder(tmp_path / "t"), placement="system"))
    same = Task("same", MetricKind.EXACT_MATCH, (), placed.eval, (), placement=PromptPlacement.END)
    plain = Task("plain", MetricKind.EXACT_MATCH, (), placed.eval, ())
    await services.score(placed, ["p"], placed.eval)
    await services.score_with_predictions(placed, "p", placed.eval)
    await services.score(same, ["p"], placed.eval)
    await services.score(plain, ["p"], placed.eval)
    system_params = TaskModelParams(placement=PromptPlacement.SYSTEM, temperature=0.0)
    assert evaluators.calls == [{"params": system_params}, {"params": system_params}, {}, {}]


async def test_a_sweep_views_params_give_way_to_a_tasks_own() -> None:
    from gpo_ray.controller.pools import EvaluatorPoolView

    class Pool:
        def __init__(self) -> None:
            self.params: list[TaskModelParams] = []

        async def score(self, task, metric, prompts, examples, *, params, account):
            self.params.append(params)
            return [[]]

    pool = Pool()
    sub_run = TaskModelParams(placement=PromptPlacement.BEGINNING)
    view = EvaluatorPoolView(pool, params=sub_run, account="a")  # type: ignore[arg-type]
    own = TaskModelParams(placement=PromptPlacement.SYSTEM)
    await view.score("t", MetricKind.EXACT_MATCH, ["p"], [])
    await view.score("t", MetricKind.EXACT_MATCH, ["p"], [], params=own)
    assert pool.params == [sub_run, own]
