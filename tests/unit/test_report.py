"""`gpo-ray report` on hand-built run directories: every task, scores, decodable plots, the word diff, escaping of
prompts and task names, runs in progress (no results.json, a torn checkpoint line), resumed runs, markdown."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from html.parser import HTMLParser

import pytest

from gpo_ray.cli import main
from gpo_ray.config import RunConfig
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import ScoredCandidate
from gpo_ray.report import read_run, render_html, render_markdown
from gpo_ray.report.render_md import code_block, diff_markdown, md_escape
from gpo_ray.report.word_diff import DiffPiece, word_diff
from gpo_ray.runtime.run_dir import RunDirectory, task_file_name

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = 'Answer <script>alert("x")</script> <img src=x onerror=alert(1)> & "quote" **bold** `code`'


def trajectory(prompts: list[str], *, budgets: list[int] | None = None) -> list[StepResult]:
    """Step 0 plus one step per further prompt; scores rise by 0.1, each step with three candidates."""
    budgets = budgets or [10] * len(prompts)
    return [
        StepResult(step=i, edit_budget=0 if i == 0 else budgets[i], prompt=p, eval_score=round(0.3 + 0.1 * i, 3),
                   candidates=() if i == 0 else tuple(ScoredCandidate(f"{p} v{j}", 0.2 * j, j + 1) for j in range(3)),
                   counts={"admitted": 3} if i else {})
        for i, p in enumerate(prompts)
    ]


def make_run(tmp_path, tasks: dict[str, list[StepResult]], *, results: dict | None = None,
             usage: dict | None = None, name: str = "run") -> RunDirectory:
    config = RunConfig(tasks=list(tasks) or ["example/arithmetic"], run_dir=tmp_path / name)
    rd = RunDirectory(config.run_dir)
    rd.create(config)
    for task, steps in tasks.items():
        for s in steps:
            rd.append_step(task, s, fingerprint=config.fingerprint())
    if results is not None:
        rd.write_results(results)
    if usage is not None:
        rd.write_usage(usage)
    return rd


def finished_entry(steps: list[StepResult], *, best_step: int, initial_test: float, best_test: float,
                   status: str = "completed") -> dict:
    return {"initial_prompt": steps[0].prompt, "initial_eval_score": steps[0].eval_score,
            "initial_test_score": initial_test, "best_prompt": steps[best_step].prompt,
            "best_eval_score": steps[best_step].eval_score, "best_test_score": best_test, "best_step": best_step,
            "status": status, "steps": [s.to_dict() for s in steps[1:]]}


USAGE = {
    "optimizer": {"calls": 12, "requests": 14, "prompt_tokens": 3000, "completion_tokens": 400, "total_tokens": 3400,
                  "cache_hits": 1, "retries": 2, "errors": {"rate_limited": 2}},
    "task_model": {"calls": 250, "requests": 240, "prompt_tokens": 50000, "completion_tokens": 2000,
                   "total_tokens": 52000, "cache_hits": 10, "retries": 0, "errors": {}},
}


@pytest.fixture
def finished_run(tmp_path):
    a = trajectory(["Let's solve the problem.", "Let's solve the problem step by step.",
                    "Let's carefully solve the problem step by step."])
    b = trajectory(["Answer the question.", "Answer the question briefly."])
    results = {"status": "completed", "run_dir": "x", "usage": USAGE,
               "timing": {"started_at": "2026-01-01T10:00:00+00:00", "updated_at": "2026-01-01T10:05:00+00:00",
                          "wall_time_s": 3723.0},
               "tasks": {"bbh/navigate": finished_entry(a, best_step=2, initial_test=0.25, best_test=0.625),
                         "bbh/snarks": finished_entry(b, best_step=0, initial_test=0.5, best_test=0.5,
                                                      status="budget_exhausted")}}
    return make_run(tmp_path, {"bbh/navigate": a, "bbh/snarks": b}, results=results, usage=USAGE)


class PageParser(HTMLParser):
    """What a reader of the page gets: sections by id, images, text; and any element that should not exist."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.attrs_seen: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs_seen += [k for k, _ in attrs]
        if tag == "section" and a.get("id", "").startswith("task-"):
            self.current = a["id"]
            self.sections[self.current] = {"images": [], "del": 0, "ins": 0}
        if tag == "img":
            self.images.append(a)
            if self.current:
                self.sections[self.current]["images"].append(a)
        if tag in ("del", "ins") and self.current:
            self.sections[self.current][tag] += 1


def parse(page: str) -> PageParser:
    p = PageParser()
    p.feed(page)
    return p


def png_size(src: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def visible_text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


# the finished run ------------------------------------------------------------------------------------------------
def test_every_task_has_a_section_with_a_decodable_plot_and_alt_text(finished_run):
    page = render_html(read_run(finished_run.path))
    doc = parse(page)
    assert set(doc.sections) == {"task-bbh-navigate", "task-bbh-snarks"}
    for sid, section in doc.sections.items():
        (img,) = section["images"]
        width, height = png_size(img["src"])
        assert width >= 600 and height >= 200, sid
        assert sid.removeprefix("task-bbh-") in img["alt"] and "edit budget" in img["alt"]
    assert "<script" not in page and "http" not in page.split("</head>")[1], "self-contained, no script, no link"


def test_the_summary_shows_initial_and_best_scores_tests_status_and_usage(finished_run):
    text = visible_text(render_html(read_run(finished_run.path)))
    # task, status, steps done/total, initial eval, best eval, delta, initial test, best test, best step
    assert "bbh/navigate completed 2/2 0.300 0.500 +0.200 0.250 0.625 2" in text
    assert "bbh/snarks budget_exhausted 1/? 0.300 0.300 +0.000 0.500 0.500 0" in text
    assert "optimizer 12 14 3,000 400 3,400 1 2 rate_limited: 2" in text
    assert "task_model 250 240 50,000 2,000 52,000 10 0 0" in text
    assert "total 262 254 53,000 2,400 55,400 11 2 rate_limited: 2" in text
    assert "1h 02m 03s (summed over the first run and its resumes)" in text


def test_initial_and_best_prompts_side_by_side_with_a_word_diff(finished_run):
    page = render_html(read_run(finished_run.path))
    section = page.split('id="task-bbh-navigate"')[1].split("</section>")[0]
    assert "<pre>Let&#x27;s solve the problem.</pre>" in section
    assert "<pre>Let&#x27;s carefully solve the problem step by step.</pre>" in section
    assert ('<div class="diff">Let&#x27;s <ins>carefully</ins> solve the <del>problem.</del> '
            "<ins>problem step by step.</ins></div>") in section
    snarks = page.split('id="task-bbh-snarks"')[1]
    assert "<del>" not in snarks.split("</section>")[0], "the best prompt is the initial one: nothing changed"


def test_per_step_table_has_budget_measured_distance_and_candidate_spread(finished_run):
    page = render_html(read_run(finished_run.path))
    section = visible_text(page.split('id="task-bbh-navigate"')[1].split("</section>")[0])
    assert "0 – – 0.300 0 –" in section
    assert "1 10 4 0.400 3 0.000 / 0.200 / 0.400" in section  # "problem." -> "problem step by step.": 4 words
    assert "2 10 1 0.500 3 0.000 / 0.200 / 0.400" in section  # +"carefully": 1 word


# escaping ------------------------------------------------------------------------------------------------------------
def test_prompts_and_task_names_cannot_inject_html(tmp_path):
    name = 'evil/<b onmouseover="x">"'
    rd = make_run(tmp_path, {name: trajectory([HOSTILE, HOSTILE + " <iframe src=javascript:alert(2)>"])})
    page = render_html(read_run(rd.path))
    doc = parse(page)
    assert not {"script", "iframe", "b"} & set(doc.tags)
    assert not {"onerror", "onmouseover"} & set(doc.attrs_seen)
    assert [i for i in doc.images if i["src"].startswith("data:image/png")] == doc.images
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # shown as text, not dropped
    (sid,) = doc.sections
    assert re.fullmatch(r"task-[a-z0-9-]+", sid)


def test_markdown_escapes_run_text_and_keeps_prompts_verbatim_in_fences(tmp_path):
    rd = make_run(tmp_path, {"t|x": trajectory([HOSTILE, "```\n# not a heading\n" + HOSTILE])})
    md = render_markdown(read_run(rd.path))
    assert "<script>" not in md.split("```")[0], "no raw HTML outside code fences"
    assert "````text\n```\n# not a heading\n" + HOSTILE + "\n````" in md  # the fence outlasts the prompt's
    for line in md.splitlines():
        if line.startswith("| [t"):
            assert line.startswith("| [t\\|x](#task-t-x) |")
    diff_line = next(line for line in md.splitlines() if line.startswith("**\\`\\`\\`"))
    assert "<" not in diff_line and "&lt;script&gt;" in diff_line


def test_markdown_escape_leaves_no_markup():
    assert md_escape("1. **a** _b_ [c](d) <e> | ~~f~~") == (
        "1\\. \\*\\*a\\*\\* \\_b\\_ \\[c\\](d) &lt;e&gt; \\| \\~\\~f\\~\\~")
    assert md_escape("# head\nline") == "\\# head line"
    assert md_escape("0.500") == "0.500"
    assert code_block("x ``` y") == "````text\nx ``` y\n````"


# word diff --------------------------------------------------------------------------------------------------------
def test_word_diff_pieces_rebuild_both_prompts():
    old, new = "Let's solve the problem.", "Let's   carefully solve this problem.\nThink."
    pieces = word_diff(old, new)
    assert pieces == [DiffPiece("equal", "Let's"), DiffPiece("insert", "carefully"), DiffPiece("equal", "solve"),
                      DiffPiece("delete", "the"), DiffPiece("insert", "this"), DiffPiece("equal", "problem."),
                      DiffPiece("insert", "Think.")]
    assert " ".join(p.text for p in pieces if p.op != "insert") == " ".join(old.split())
    assert " ".join(p.text for p in pieces if p.op != "delete") == " ".join(new.split())
    assert diff_markdown(old, new) == "Let's **carefully** solve ~~the~~ **this** problem. **Think.**"
    assert word_diff("", "") == []


# in progress, resumed ---------------------------------------------------------------------------------------------
def test_a_run_in_progress_without_results_and_with_a_torn_checkpoint_line(tmp_path):
    steps = trajectory(["Solve it.", "Solve it step by step.", "Solve it step by step, carefully."])
    rd = make_run(tmp_path, {"sums/a": steps, "sums/b": steps[:1]})
    with open(rd.checkpoints / task_file_name("sums/a"), "a") as f:
        f.write('{"v": 1, "fp": "')  # killed mid-write
    (rd.checkpoints / task_file_name("sums/c")).write_text('{"v": 1, "fp')  # a task that never finished step 0
    assert not rd.results_file.exists()

    run = read_run(rd.path)
    assert run.status == "running"
    assert {n: t.status for n, t in run.tasks.items()} == {"sums/a": "running", "sums/b": "running"}
    assert run.tasks["sums/a"].steps_done == 2 and run.tasks["sums/a"].best.step == 2
    page = render_html(run)
    doc = parse(page)
    assert set(doc.sections) == {"task-sums-a", "task-sums-b"}
    assert all(len(s["images"]) == 1 for s in doc.sections.values())
    text = visible_text(page)
    assert "sums/a running 2/? 0.300 0.500 +0.200 – – 2" in text
    assert "wall time unknown" in text and "No usage recorded yet." in text
    md = render_markdown(run)
    assert "| [sums/a](#task-sums-a) | running | 2/? | 0.300 | 0.500 | +0.200 | – | – | 2 |" in md


def test_checkpoints_ahead_of_results_json_win_and_a_stopped_run_marks_unfinished_tasks(tmp_path):
    steps = trajectory(["A.", "A b.", "A b c."])
    stale = {"sums/a": {**finished_entry(steps[:2], best_step=1, initial_test=0, best_test=0), "status": "running",
                        "initial_test_score": None, "best_test_score": None}}
    rd = make_run(tmp_path, {"sums/a": steps}, results={"status": "stopped", "tasks": stale, "usage": {}})
    task = read_run(rd.path).tasks["sums/a"]
    assert task.status == "stopped"
    assert task.steps_done == 2 and task.best.prompt == "A b c."


def test_timing_falls_back_to_the_log_then_to_unknown(tmp_path):
    rd = make_run(tmp_path, {"t": trajectory(["A.", "A b."])})
    assert read_run(rd.path).timing.source == "unknown"
    log = rd.logs_dir / "driver.jsonl"
    log.write_text("\n".join(json.dumps({"event": e, "timestamp": ts}) for e, ts in [
        ("run_started", "2026-01-01T10:00:00.000000Z"), ("step_done", "2026-01-01T10:01:30.000000Z"),
        ("run_resumed", "2026-01-01T11:00:00.000000Z")]) + "\n{torn")
    t = read_run(rd.path).timing
    assert (t.source, t.wall_time_s) == ("log", 3600.0)
    assert "1h 00m 00s (first to last log event, pauses between resumes included)" in visible_text(
        render_html(read_run(rd.path)))


def test_totals_and_the_whole_schedule_come_from_the_data_when_it_is_there(tmp_path):
    """example/arithmetic ships with the package: 8 train examples, batch 8, 3 epochs -> T = 3."""
    rd = make_run(tmp_path, {"example/arithmetic": trajectory(["A.", "A b."])})
    task = read_run(rd.path).tasks["example/arithmetic"]
    assert task.total_steps == 3 and len(task.budgets()) == 3
    assert read_run(rd.path, resolve_data=False).tasks["example/arithmetic"].total_steps is None


def test_a_resumed_run_reads_duplicated_steps_once(tmp_path):
    steps = trajectory(["A.", "A b.", "A b c."])
    rd = make_run(tmp_path, {"t": steps + steps[1:2]})  # a resume re-appended step 1
    assert [s.step for s in read_run(rd.path).tasks["t"].steps] == [0, 1, 2]


def test_a_run_with_no_step_yet_renders(tmp_path):
    rd = make_run(tmp_path, {})
    page = render_html(read_run(rd.path, resolve_data=False))
    assert "No task has started yet." in page
    assert "No task has started yet." in render_markdown(read_run(rd.path, resolve_data=False))


# the command ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def usual_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("usual_umask")
def test_report_command_writes_html_then_markdown_by_suffix(finished_run, tmp_path, capsys):
    assert main(["report", str(finished_run.path)]) == 0
    default = finished_run.path / "report.html"
    assert capsys.readouterr().out.strip() == str(default)
    assert default.stat().st_mode & 0o777 == 0o644, "the user's umask applies, as to any file they write"
    assert set(parse(default.read_text()).sections) == {"task-bbh-navigate", "task-bbh-snarks"}
    out = tmp_path / "r.md"
    assert main(["report", str(finished_run.path), "--output", str(out)]) == 0
    assert out.read_text().startswith("# gpo-ray report: run\n")
    assert main(["report", str(finished_run.path), "--format", "md", "--output", "-"]) == 0
    assert capsys.readouterr().out.split("\n", 1)[0] == str(out)
    assert main(["report", str(finished_run.path), "--format", "md", "--output", "-"]) == 0
    assert "## bbh/navigate" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["not-a-run", "missing"])
def test_report_on_a_directory_without_a_run_is_one_line_and_exit_2(tmp_path, capsys, target):
    (tmp_path / "not-a-run").mkdir()
    assert main(["report", str(tmp_path / target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpo-ray: error:") and "no gpo-ray run" in err[0]


def test_report_refuses_a_damaged_checkpoint_and_an_unwritable_output(finished_run, tmp_path, capsys):
    assert main(["report", str(finished_run.path), "--output", str(tmp_path / "no" / "such" / "dir.html")]) == 2
    assert "cannot write" in capsys.readouterr().err
    path = finished_run.checkpoints / task_file_name("bbh/navigate")
    lines = path.read_text().split("\n")
    path.write_text("\n".join([lines[0][:10], *lines[1:]]))
    assert main(["report", str(finished_run.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupted checkpoint" in err[0]
