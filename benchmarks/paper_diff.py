"""The paper preset against the authors' own loop, request by request (issue 23's differential check).

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.paper_diff --official PATH/TO/GPO --task bbh/navigate --epochs 1
    ... --align                      # the official loop on gpo-ray's exemplars and a tie-reproducing PYTHONHASHSEED
    ... --gpo-ray /other/checkout    # gpo-ray's side from another checkout (e.g. a branch's worktree)

PATH is a local copy of RUCAIBox/GPO, fetched by you (never vendored here). The harness

1. starts two copies (A, B) of the project's deterministic fake endpoint (`gpo_ray.testing.FakeLLMServer`, its
   scripted task model knowing the task's answers), each recording every request and reply in full;
2. runs `gpo-ray optimize` with `preset: paper` on the task against copy B, the config naming only what a user
   names (the endpoints and models, the task, the epochs) plus `cluster` settings for a small machine;
3. copies the official `src/` and `data/` to a temp folder and runs `src/optimization/main.py` with GPO.sh's own
   flags (read from your copy's GPO.sh; only the task and the epochs replaced) against copy A, with the stand-ins of
   `benchmarks/paper_diff_shims/` first on its PYTHONPATH: its OpenAI optimizer calls and its vLLM scorer go to
   copy A over the chat API, and its SentenceTransformer is gpo-ray's MiniLM embedder;
4. compares: every optimizer request (matched by step and index), every step's edit budget, every candidate's
   score, every step's choice, and every task-model request (first and second turns, matched by content); and
   writes paper_diff.md and paper_diff.json. Exit code 1 when anything differs, each difference named.

How the two sides' sampling is lined up: the official loop sends each step's 8 identical requests with n=8 and
reads choices[0] of each; gpo-ray sends 8 single requests with seeds stable_seed(seed, task, step, index). The fake
answers by content and seed only (never by arrival order or count), and the official side's shim gives its c-th
candidate request the seed gpo-ray gives step c // 8 + 1, index c % 8, so both sides' i-th sample of a step is the
same reply when their requests are. `n` and that seed are the only request fields compared as "by design".
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpo_ray.core.extraction import extract_paper_candidate

ROOT = Path(__file__).resolve().parent.parent
SHIMS = Path(__file__).resolve().parent / "paper_diff_shims"
DEFAULT_DATA = Path(os.environ.get("GPO_SHARED_DATA") or ROOT.parent / "shared" / "datasets" / "gpo")
DEPS_DIR = Path(tempfile.gettempdir()) / "gpo-paper-diff-deps"
# Pure-Python packages the official code imports that gpo-ray's venv lacks (installed with --no-deps into DEPS_DIR).
OFFICIAL_DEPS = ("absl-py", "rouge", "pandas", "python-dateutil", "pytz", "tzdata", "six")
PROBE = "Does the sun rise from the north? Just answer yes or no."
OPTIMIZER_MODEL = "gpt-3.5-turbo"  # GPO.sh's OPTIMIZER; gpo-ray's config names the same model
TASK_MODEL = "fake-task-model"
EPS = 1e-9
OFFICIAL_TIMEOUT_S = 3600  # its retry loops never give up on an endpoint that is gone

# Known causes of request-field differences: (field, official value, gpo-ray value) -> cause.
FIELD_CAUSES = {
    ("max_tokens", 256, None): "the task model's max_tokens: a config that names the task model's endpoint rebuilds "
                               "the role from LLMRoleConfig's field defaults (None), and the preset does not set it "
                               "(issue 23's first defect); the official scorer sends 256",
}

# Request fields that differ by design (the comparison lines the two sides up through them).
BY_DESIGN = {
    "n": "the official loop asks n=8 per call and reads choices[0]; gpo-ray sends 8 seeded single calls "
         "(the issue keeps these; the harness matches calls by step and index)",
    "seed": "the official loop sends no seed; the harness's shim gives its c-th candidate request gpo-ray's seed "
            "for the same step and index, and its scorer gpo-ray's task-model seed, so the fake answers alike",
}


# ----------------------------------------------------------------------------------------------------------------
# Pure parts: the official extraction and choice rule (re-stated, not copied), request matching, the diff, the report.
# ----------------------------------------------------------------------------------------------------------------


def official_choice(current: str, step_scores: Sequence[tuple[str, float]], chosen_before: Iterable[str]) -> str:
    """The official step's choice: the ranking dict starts with the current prompt at 0.0, then the step's scored
    prompts in the order given (repeated ones, then the new ones in list(set(...)) order); a stable sort by score,
    best first; the first one not chosen at an earlier step, else the top one."""
    ranking: dict[str, float] = {current: 0.0}
    for prompt, score in step_scores:
        ranking[prompt] = score
    ordered = sorted(ranking.items(), key=lambda x: x[1], reverse=True)
    before = set(chosen_before)
    for prompt, _ in ordered:
        if prompt not in before:
            return prompt
    return ordered[0][0]


@dataclass
class Difference:
    what: str  # a short category, e.g. "optimizer request text"
    where: str  # e.g. "step 2, sample 5"
    detail: str
    cause: str = ""

    def line(self) -> str:
        cause = f" - cause: {self.cause}" if self.cause else ""
        return f"{self.what} @ {self.where}: {self.detail}{cause}"


@dataclass
class Comparison:
    """What was compared and what differed."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # category -> {"compared", "identical"}
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tally(self, category: str, same: bool) -> None:
        c = self.counts.setdefault(category, {"compared": 0, "identical": 0})
        c["compared"] += 1
        c["identical"] += int(same)

    def add(self, what: str, where: str, detail: str, cause: str = "") -> None:
        self.differences.append(Difference(what, where, detail, cause))


def first_difference(a: str, b: str, context: int = 60) -> str:
    """Where two texts part: the line number and the two lines (clipped)."""
    la, lb = a.split("\n"), b.split("\n")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}: official {x[:2 * context]!r} | gpo-ray {y[:2 * context]!r}"
    if len(la) != len(lb):
        i = min(len(la), len(lb))
        extra_a = la[i] if i < len(la) else "<end>"
        extra_b = lb[i] if i < len(lb) else "<end>"
        return f"line {i + 1}: official {extra_a[:2 * context]!r} | gpo-ray {extra_b[:2 * context]!r}"
    return "texts equal"


def message_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])


def classify(record: dict[str, Any]) -> str:
    """probe | optimizer | task_first | task_second | other, from the fake's role and the request's shape."""
    body = record["body"]
    messages = body.get("messages") or []
    if messages and messages[-1].get("content") == PROBE:
        return "probe"
    role = record.get("role")
    if role == "optimizer":
        return "optimizer"
    if role == "task":
        return "task_second" if len(messages) >= 3 else "task_first"
    return "other"


def index_optimizer(records: Sequence[dict[str, Any]], seed_table: dict[int, tuple[int, int]]
                    ) -> tuple[dict[tuple[int, int], dict[str, Any]], list[dict[str, Any]]]:
    """Optimizer requests by (step, index), through their seeds; and those whose seed is not in the table."""
    by_slot: dict[tuple[int, int], dict[str, Any]] = {}
    unmatched: list[dict[str, Any]] = []
    for r in records:
        slot = seed_table.get(r["body"].get("seed"))
        if slot is None or slot in by_slot:
            unmatched.append(r)
        else:
            by_slot[slot] = r
    return by_slot, unmatched


def diff_optimizer_requests(cmp: Comparison, official: dict[tuple[int, int], dict[str, Any]],
                            ours: dict[tuple[int, int], dict[str, Any]],
                            step_causes: dict[int, str] | None = None,
                            format_examples: Sequence[dict[str, Any]] | None = None) -> None:
    """Each (step, index): the messages, then temperature, max_tokens and model; n and seed are by design."""
    step_causes = step_causes or {}
    for slot in sorted(set(official) | set(ours)):
        step, index = slot
        where = f"step {step}, sample {index}"
        a, b = official.get(slot), ours.get(slot)
        if a is None or b is None:
            cmp.tally("optimizer requests", False)
            side = "official" if a is not None else "gpo-ray"
            cmp.add("optimizer request missing", where, f"sent by {side} only", step_causes.get(step, ""))
            continue
        ba, bb = a["body"], b["body"]
        same_text = ba.get("messages") == bb.get("messages")
        fields = [k for k in ("temperature", "max_tokens", "model") if ba.get(k) != bb.get(k)]
        cmp.tally("optimizer requests", same_text and not fields)
        if not same_text:
            cause = step_causes.get(step, "")
            if format_examples is not None:
                ia = format_indices_in(message_text(ba), format_examples)
                ib = format_indices_in(message_text(bb), format_examples)
                if ia != ib:
                    exemplars = (f"format exemplars: official {ia} (numpy's legacy draw after np.random.seed(0)), "
                                 f"gpo-ray {ib}")
                    cause = "; ".join(filter(None, (exemplars, cause)))
            cmp.add("optimizer request text", where, first_difference(message_text(ba), message_text(bb)), cause)
        for k in fields:
            cmp.add(f"optimizer request {k}", where, f"official {ba.get(k)!r}, gpo-ray {bb.get(k)!r}")
        reply_a, reply_b = (a.get("replies") or [""])[0], (b.get("replies") or [""])[0]
        cmp.tally("optimizer replies (choices[0])", reply_a == reply_b)


@dataclass(frozen=True)
class StepView:
    """One step as either side ran it: the edit budget, every scored candidate, the choice."""

    step: int
    edit_budget: int | None
    scores: dict[str, float]
    chosen: str
    chosen_score: float | None = None


def diff_steps(cmp: Comparison, official: Sequence[StepView], ours: Sequence[StepView]) -> dict[int, str]:
    """Budgets, candidate scores and choices, step by step. Returns, per step after the first divergent choice,
    the cause to give the next step's differences."""
    a_by, b_by = {s.step: s for s in official}, {s.step: s for s in ours}
    causes: dict[int, str] = {}
    diverged: int | None = None
    chosen_before: set[str] = set()
    for t in sorted(set(a_by) | set(b_by)):
        a, b = a_by.get(t), b_by.get(t)
        if diverged is not None:
            causes[t] = f"follows from step {diverged}'s different choice"
        if a is None or b is None:
            cmp.tally("steps", False)
            cmp.add("step missing", f"step {t}", f"run by {'official' if a else 'gpo-ray'} only")
            continue
        cmp.tally("edit budgets", a.edit_budget == b.edit_budget)
        if a.edit_budget != b.edit_budget:
            cmp.add("edit budget", f"step {t}", f"official {a.edit_budget}, gpo-ray {b.edit_budget}")
        for prompt in sorted(set(a.scores) | set(b.scores)):
            sa, sb = a.scores.get(prompt), b.scores.get(prompt)
            same = sa is not None and sb is not None and abs(sa - sb) <= EPS
            cmp.tally("candidate scores", same)
            if same:
                continue
            if sa is None or sb is None:
                cause = causes.get(t, "")
                if not cause and sa is not None and prompt in chosen_before:
                    cause = ("a prompt chosen at an earlier step proposed again: the official ranking lists it with "
                             "its earlier eval score (it cannot be chosen again); gpo-ray's keep_score leaves "
                             "trajectory prompts out")
                cmp.add("candidate", f"step {t}", f"scored by {'official' if sa is not None else 'gpo-ray'} only: "
                        f"{prompt!r} ({sa if sa is not None else sb})", cause)
            else:
                cmp.add("candidate score", f"step {t}", f"{prompt!r}: official {sa}, gpo-ray {sb}", causes.get(t, ""))
        same_choice = a.chosen == b.chosen
        cmp.tally("choices", same_choice)
        if not same_choice:
            tie = (a.chosen in b.scores and b.chosen in b.scores
                   and abs(b.scores[a.chosen] - b.scores[b.chosen]) <= EPS)
            cmp.add("choice", f"step {t}", f"official {a.chosen!r}, gpo-ray {b.chosen!r}",
                    causes.get(t, "") or ("a tie broken differently (official: hash order of list(set(...)); "
                                           "gpo-ray: its own rule)" if tie else ""))
            if diverged is None:
                diverged = t
        chosen_before.add(a.chosen)
    return causes


def describe_task_request(body: dict[str, Any], questions: dict[str, str]) -> tuple[str, str, str]:
    """(turn, split, prompt) of a task request: the question found at the start of the first user message (the
    official Q_end form, question + '\\n' + prompt), its split, and the prompt after it."""
    messages = body.get("messages") or []
    turn = "second turn" if len(messages) >= 3 else "first turn"
    first = str(messages[0].get("content") or "") if messages else ""
    best = ""
    for q in questions:
        if first.startswith(q) and len(q) > len(best):
            best = q
    if not best:
        return turn, "?", first[-80:]
    return turn, questions[best], first[len(best):].lstrip("\n")


def diff_task_requests(cmp: Comparison, official: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]],
                       questions: dict[str, str], group_causes: dict[tuple[str, str], str] | None = None) -> None:
    """Task-model requests matched by their messages: those sent by one side only (grouped by turn, split and
    prompt), the fields of those both sent (temperature, max_tokens, model; seed by design), and repeat counts."""
    group_causes = group_causes or {}
    def keyed(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for r in records:
            out[json.dumps(r["body"].get("messages"), ensure_ascii=False)].append(r["body"])
        return out

    a, b = keyed(official), keyed(ours)
    only: dict[tuple[str, str, str, str], int] = collections.Counter()
    fields: dict[tuple[str, str, Any, Any], int] = collections.Counter()
    repeats: dict[tuple[str, int, int], int] = collections.Counter()
    for key in set(a) | set(b):
        in_a, in_b = a.get(key), b.get(key)
        body = (in_a or in_b)[0]  # type: ignore[index]
        turn, split, prompt = describe_task_request(body, questions)
        if in_a is None or in_b is None:
            cmp.tally(f"task requests ({turn})", False)
            only["official" if in_a else "gpo-ray", turn, split, prompt] += 1
            continue
        diff = [k for k in ("temperature", "max_tokens", "model") if in_a[0].get(k) != in_b[0].get(k)]
        cmp.tally(f"task requests ({turn})", not diff)
        for k in diff:
            fields[turn, k, in_a[0].get(k), in_b[0].get(k)] += 1
        if len(in_a) != len(in_b):
            repeats[turn, len(in_a), len(in_b)] += 1
    for (side, turn, split, prompt), n in sorted(only.items()):
        cause = group_causes.get((split, prompt), "")
        cmp.add("task requests on one side", f"{split} split, {turn}",
                f"{n} sent by {side} only, prompt {prompt!r}", cause)
    for (turn, k, va, vb), n in sorted(fields.items(), key=str):
        cause = FIELD_CAUSES.get((k, va, vb), "")
        cmp.add(f"task request {k}", turn, f"official {va!r}, gpo-ray {vb!r} on {n} requests sent by both", cause)
    for (turn, na, nb), n in sorted(repeats.items()):
        cmp.notes.append(f"{n} task requests ({turn}) sent {na}x by the official loop and {nb}x by gpo-ray "
                         "(the same request again: its reply is the same)")


def group_differences(differences: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Differences that say the same thing in several places, as one: "step 2, samples 0-7"."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for d in differences:
        groups.setdefault((d["what"], d["detail"], d["cause"]), []).append(d["where"])
    out = []
    for (what, detail, cause), wheres in groups.items():
        samples: dict[str, list[int]] = {}
        rest: list[str] = []
        for w in wheres:
            m = re.fullmatch(r"(step \d+), sample (\d+)", w)
            if m:
                samples.setdefault(m.group(1), []).append(int(m.group(2)))
            else:
                rest.append(w)
        parts = []
        for step, idx in samples.items():
            idx.sort()
            contiguous = idx == list(range(idx[0], idx[-1] + 1))
            parts.append(f"{step}, sample {idx[0]}" if len(idx) == 1 else
                         f"{step}, samples {idx[0]}-{idx[-1]}" if contiguous else
                         f"{step}, samples {', '.join(map(str, idx))}")
        out.append({"what": what, "where": "; ".join(parts + rest), "detail": detail, "cause": cause,
                    "count": len(wheres)})
    return out


def is_consequence(cause: str) -> bool:
    """A difference that follows from an earlier divergent choice (its cause says so)."""
    return "follows from step" in cause


def render_markdown(report: dict[str, Any]) -> str:
    title = (f"# Paper preset vs the official loop: {report['task']}, {report['epochs']} epoch(s)"
             f"{' (aligned)' if report['align'] else ''}")
    lines = [title, ""]
    for k, v in report["setup"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "| compared | total | identical | differing |", "|---|---:|---:|---:|"]
    for cat, c in report["counts"].items():
        lines.append(f"| {cat} | {c['compared']} | {c['identical']} | {c['compared'] - c['identical']} |")
    grouped = group_differences(report["differences"])
    roots = [d for d in grouped if not is_consequence(d["cause"])]
    lines += ["", f"## Differences: {len(report['differences'])} (in {len(grouped)} groups)", "",
              f"Root differences (not following from an earlier divergent choice): {len(roots)} group(s)", ""]
    for d in roots:
        lines.append(f"- **{d['what']}** @ {d['where']}" + (f": *{d['cause']}*" if d["cause"] else ""))
    lines += ["", "All of them:", ""]
    for d in grouped:
        lines.append(f"- **{d['what']}** @ {d['where']}: {d['detail']}" + (f" - *cause: {d['cause']}*"
                                                                            if d["cause"] else ""))
    if not report["differences"]:
        lines.append("None.")
    lines += ["", "## By design (not counted)", ""]
    lines += [f"- `{k}`: {v}" for k, v in BY_DESIGN.items()]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def task_group_causes(official: Sequence[StepView], ours: Sequence[StepView], step_causes: dict[int, str],
                      initial: str) -> dict[tuple[str, str], str]:
    """Why task requests of a (split, prompt) may be sent by one side only: calls one side does not make, or a
    prompt only one side had after a divergent choice (step_causes: the steps after it)."""
    diverged = min(step_causes) - 1 if step_causes else None
    follows = f"follows from step {diverged}'s different choice"

    def after(step: int) -> bool:  # the prompt of this call exists only since the divergent choice
        return diverged is not None and step >= diverged

    causes: dict[tuple[str, str], str] = {}
    for side, views in (("the official loop", official), ("gpo-ray", ours)):
        prompts = [initial] + [v.chosen for v in views]
        for v in views:
            current = prompts[v.step - 1] if v.step - 1 < len(prompts) else ""
            causes.setdefault(("train", current), follows if after(v.step - 1) else
                              f"{side} scores the current prompt on step {v.step}'s training batch (official "
                              "train_log); the other side does not make that call")
            causes.setdefault(("test", v.chosen), follows if after(v.step) else
                              f"{side} scores step {v.step}'s choice on the test split (official test_log); the "
                              "other side does not make that call")
    for v in ours:  # without trace scoring, gpo-ray scores its best prompt on test at the end
        causes.setdefault(("test", v.chosen), "gpo-ray scores its best prompt on the test split at the end; the "
                          "official loop never chose it" + (f" ({follows})" if after(v.step) else ""))
    for views in (official, ours):
        for v in views:
            for p in v.scores:
                if v.step in step_causes:
                    causes.setdefault(("eval", p), f"a candidate of step {v.step} ({step_causes[v.step]})")
    return causes


# ----------------------------------------------------------------------------------------------------------------
# The runs.
# ----------------------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def task_files(data_dir: Path, task: str) -> dict[str, list[dict[str, Any]]]:
    family, _, sub = task.partition("/")
    folder = data_dir / {"bbh": "BIG-Bench-Hard"}.get(family, family) / sub
    return {split: read_jsonl(folder / f"{split}.jsonl") for split in ("train", "eval", "test", "format")}


def make_fake(files: dict[str, list[dict[str, Any]]]) -> Any:
    """A ThreadedFake whose server records every request and reply, and answers n > 1 with n choices (choice k > 0
    as to seed f"{seed}/{k}"): content and seed decide every reply."""
    from aiohttp import web

    from gpo_ray.testing import FakeLLMConfig, FakeLLMServer, ThreadedFake
    from gpo_ray.testing.server import chat_request

    class RecordingFake(FakeLLMServer):
        def __init__(self, config: FakeLLMConfig) -> None:
            super().__init__(config)
            self.records: list[dict[str, Any]] = []

        async def _chat(self, request: web.Request) -> web.StreamResponse:
            body = await request.json()  # aiohttp keeps the body: the fake reads it again
            response = await super()._chat(request)
            if response.status != 200 or not isinstance(response, web.Response) or response.body is None:
                self.records.append({"body": body, "status": response.status})
                return response
            payload = json.loads(response.body)
            n = int(body.get("n") or 1)
            for k in range(1, n):
                extra = dict(body, seed=f"{body.get('seed')}/{k}")
                reply = self.model.reply(chat_request(extra))
                payload["choices"].append({"index": k, "message": {"role": "assistant", "content": reply.text},
                                           "finish_reason": reply.finish_reason})
            role = self.model.reply(chat_request(body)).role
            self.records.append({"body": body, "status": 200, "role": role,
                                 "replies": [c["message"]["content"] for c in payload["choices"]]})
            return web.json_response(payload)

    key = {ex["input"].strip(): str(ex["target"]) for split in ("train", "eval", "test", "format")
           for ex in files[split]}
    config = FakeLLMConfig(answer_key=key, concurrency=64)
    fake = ThreadedFake(config)
    fake.server = RecordingFake(config)
    return fake


def parse_gpo_sh(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """GPO.sh's variables and its `--flag=$VAR` arguments to main.py, in order."""
    variables: dict[str, str] = {}
    for m in re.finditer(r"^([A-Z_]+)=(.*)$", text, flags=re.MULTILINE):
        value = shlex.split(m.group(2)) if m.group(2).strip() else [""]
        variables[m.group(1)] = value[0] if value else ""
    flags = [(m.group(1), m.group(2)) for m in re.finditer(r"--([a-z_]+)=\"?\$([A-Z_]+)\"?", text)]
    return variables, flags


def official_command(official: Path, task: str, epochs: int) -> list[str]:
    variables, flags = parse_gpo_sh((official / "GPO.sh").read_text(encoding="utf-8"))
    family, _, sub = task.partition("/")
    variables.update(TASK=sub, NUM_SEARCH_EPOCHS=str(epochs), DATASET=family)
    return [f"--{flag}={variables[var]}" for flag, var in flags]


def ensure_official_deps(python: str) -> Path:
    """The official code's pure-Python imports that gpo-ray's venv lacks, in a throwaway folder (once)."""
    marker = DEPS_DIR / ".complete"
    if marker.exists():
        return DEPS_DIR
    DEPS_DIR.mkdir(parents=True, exist_ok=True)
    missing = [p for p in OFFICIAL_DEPS if subprocess.run(
        [python, "-c", f"import importlib.util,sys; sys.exit(importlib.util.find_spec({_module_of(p)!r}) is None)"],
        check=False, capture_output=True).returncode != 0]
    if missing:
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--target", str(DEPS_DIR), *missing],
                       check=True)
    marker.write_text(" ".join(missing))
    return DEPS_DIR


def _module_of(package: str) -> str:
    return {"absl-py": "absl", "python-dateutil": "dateutil"}.get(package, package)


def run_gpo_ray(*, gpo_root: Path, base_url: str, task: str, epochs: int, data_dir: Path, out: Path,
                python: str) -> dict[str, Any]:
    run_dir = out / "gpo-ray-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = {
        "preset": "paper",
        "tasks": [task],
        "data_dir": str(data_dir),
        "task_model": {"base_url": base_url, "model": TASK_MODEL},
        "optimizer_model": {"base_url": base_url, "model": OPTIMIZER_MODEL},
        "optimizer": {"epochs": epochs},
        "cluster": {"num_refiners": 1, "num_evaluators": 1},
        "cache": False,
        "run_dir": str(run_dir),
    }
    cfg = out / "gpo-ray-config.json"
    cfg.write_text(json.dumps(config, indent=2))
    cfg_yaml = out / "gpo-ray-config.yaml"
    import yaml

    cfg_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(gpo_root), RAY_DEDUP_LOGS="0")
    started = time.monotonic()
    with open(out / "gpo-ray.log", "w") as log:
        proc = subprocess.run([python, "-m", "gpo_ray", "optimize", str(cfg_yaml), "--quiet"], check=False, cwd=out,
                              env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"gpo-ray's run failed (exit {proc.returncode}); see {out / 'gpo-ray.log'}")
    results = json.loads((run_dir / "results.json").read_text())
    return {"results": results, "seconds": round(time.monotonic() - started, 1), "config": config}


def run_official(*, official: Path, base_url: str, task: str, epochs: int, out: Path, python: str,
                 hash_seed: int, format_indices: list[int] | None, gpo_root: Path, seed: int,
                 candidates: int) -> dict[str, Any]:
    work = out / "official"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(official / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    family, _, sub = task.partition("/")
    data_sub = {"bbh": "BIG-Bench-Hard"}.get(family, family)
    shutil.copytree(official / "data" / data_sub / sub, work / "data" / data_sub / sub)
    shim_config = {
        "optimizer_base_url": base_url, "scorer_base_url": base_url, "scorer_model": TASK_MODEL,
        "scorer_seed": seed, "seed": seed, "task": task, "candidates": candidates, "format_indices": format_indices,
    }
    (out / "shim-config.json").write_text(json.dumps(shim_config, indent=2))
    deps = ensure_official_deps(python)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, (SHIMS, deps, gpo_root))),
               PYTHONHASHSEED=str(hash_seed), GPO_DIFF_SHIM_CONFIG=str(out / "shim-config.json"))
    args = official_command(official, task, epochs)
    (out / "official-command.txt").write_text(
        f"PYTHONHASHSEED={hash_seed} python src/optimization/main.py " + " ".join(map(shlex.quote, args)) + "\n")
    started = time.monotonic()
    with open(out / "official.log", "w") as log:
        proc = subprocess.run([python, "src/optimization/main.py", *args], check=False, cwd=work, env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=OFFICIAL_TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit(f"the official loop failed (exit {proc.returncode}); see {out / 'official.log'}")
    found = sorted(work.glob(f"outputs/optimization-results/*/result_by_instruction/{sub}/results_dict.json"))
    if not found:
        raise SystemExit(f"the official loop wrote no results_dict.json; see {out / 'official.log'}")
    return {"results": json.loads(found[-1].read_text()), "seconds": round(time.monotonic() - started, 1),
            "args": args}


# ----------------------------------------------------------------------------------------------------------------
# Turning both sides' outputs into StepViews.
# ----------------------------------------------------------------------------------------------------------------


def gpo_steps(results: dict[str, Any], task: str) -> list[StepView]:
    tasks = results.get("tasks", results)
    doc = tasks[task] if isinstance(tasks, dict) and task in tasks else tasks
    return [StepView(step=int(s["step"]), edit_budget=int(s["edit_budget"]),
                     scores={c["prompt"]: float(c["score"]) for c in s.get("candidates", [])},
                     chosen=s["prompt"], chosen_score=float(s["eval_score"])) for s in doc["steps"]]


def official_steps(results: dict[str, Any], slots: dict[tuple[int, int], dict[str, Any]],
                   steps_per_epoch: int) -> list[StepView]:
    """The official steps from results_dict.json (budgets, choices, new candidates' eval scores) and the recorded
    optimizer replies (each step's candidates as it extracted them, repeated ones with their earlier score)."""
    new_by_step = {e * steps_per_epoch + s + 1: list(instrs) for instrs, e, s in results["meta_generate_instructions"]}
    # eval_log keys are epoch_step_index. Entries of repeated candidates carry a stale text (a slip in optimize.py:
    # `instruction`, not `ins`), so only entries naming one of the step's new candidates are read.
    new_scores: dict[str, float] = {}
    for key, entry in results["eval_log"].items():
        if key == "-1_-1":
            new_scores.setdefault(entry[0], float(entry[1]))
            continue
        e, s, _ = (int(x) for x in key.split("_"))
        if entry[0] in new_by_step.get(e * steps_per_epoch + s + 1, ()):
            new_scores.setdefault(entry[0], float(entry[1]))
    budgets = {e * steps_per_epoch + s + 1: int(size) for size, e, s in results.get("modify_word_num_history", [])}
    chosen = {}
    for key, entry in results["test_log"].items():
        if key == "-1_-1":
            continue
        e, s = (int(x) for x in key.split("_"))
        chosen[e * steps_per_epoch + s + 1] = entry[0]
    views = []
    for t in sorted(chosen):
        generated = [extract_paper_candidate((slots[(t, i)].get("replies") or [""])[0])
                     for i in range(len([k for k in slots if k[0] == t]))]
        scores = {p: new_scores[p] for p in new_by_step.get(t, []) if p in new_scores}
        for p in generated:
            if p not in scores and p in new_scores:
                scores[p] = new_scores[p]  # a repeat keeps its earlier score
        views.append(StepView(step=t, edit_budget=budgets.get(t), scores=scores, chosen=chosen[t],
                              chosen_score=new_scores.get(chosen[t])))
    return views


# ----------------------------------------------------------------------------------------------------------------
# Alignment: gpo-ray's exemplars, and a hash seed under which the official ties fall as gpo-ray's did.
# ----------------------------------------------------------------------------------------------------------------

_SET_ORDER = "import json,sys; print(json.dumps([list(set(x)) for x in json.load(sys.stdin)]))"


def set_orders(lists: list[list[str]], hash_seed: int, python: str = sys.executable) -> list[list[str]]:
    # Not -I or -E: those make Python ignore PYTHONHASHSEED. A bare environment and -S -s keep it quick.
    out = subprocess.run([python, "-S", "-s", "-c", _SET_ORDER], input=json.dumps(lists), text=True,
                         capture_output=True, env={"PYTHONHASHSEED": str(hash_seed)}, check=True)
    return json.loads(out.stdout)


def official_lists(gpo: Sequence[StepView], slots: dict[tuple[int, int], dict[str, Any]], initial: str
                   ) -> list[tuple[str, list[tuple[str, float]], list[str]]]:
    """Per step as the official loop would see gpo-ray's run: the current prompt, the repeated candidates with
    their earlier scores, and the new ones before list(set(...))."""
    seen: set[str] = set()
    score_of: dict[str, float] = {}
    out = []
    current = initial
    for view in gpo:
        n = len([k for k in slots if k[0] == view.step])
        generated = [extract_paper_candidate((slots[(view.step, i)].get("replies") or [""])[0]) for i in range(n)]
        repeated, new = [], []
        for p in generated:
            if p in seen:
                if p in score_of:
                    repeated.append((p, score_of[p]))
            else:
                seen.add(p)
                new.append(p)
        out.append((current, repeated, new))
        for p in new:
            if p in view.scores:
                score_of[p] = view.scores[p]
        current = view.chosen
    return out


def find_hash_seed(gpo: Sequence[StepView], slots: dict[tuple[int, int], dict[str, Any]], initial: str,
                   limit: int, python: str = sys.executable) -> int | None:
    lists = official_lists(gpo, slots, initial)
    for seed in range(limit):
        orders = set_orders([new for _, _, new in lists], seed, python)
        chosen_before: list[str] = []
        ok = True
        for view, (current, repeated, _), order in zip(gpo, lists, orders, strict=True):
            step_scores = repeated + [(p, view.scores.get(p, 0.0)) for p in order]
            pick = official_choice(current, step_scores, chosen_before)
            if pick != view.chosen:
                ok = False
                break
            chosen_before.append(pick)
        if ok:
            return seed
    return None


def format_indices_in(text: str, format_examples: Sequence[dict[str, Any]]) -> list[int]:
    """Which format exemplars an optimizer request shows, by their inputs, in file order."""
    return [i for i, ex in enumerate(format_examples) if ex["input"].strip() and ex["input"].strip() in text]


# ----------------------------------------------------------------------------------------------------------------


def seed_table(seed: int, task: str, steps: int, candidates: int) -> dict[int, tuple[int, int]]:
    from gpo_ray.core.batches import stable_seed

    return {stable_seed(seed, task, t, offset + i): (t, i) for t in range(1, steps + 1)
            for offset, i in ((0, i) for i in range(candidates))}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", type=Path, required=True, help="a local copy of RUCAIBox/GPO (with GPO.sh, src/, data/)")
    p.add_argument("--task", default="bbh/navigate")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--align", action="store_true",
                   help="the official loop on gpo-ray's exemplars and a PYTHONHASHSEED reproducing gpo-ray's tie-breaks")
    p.add_argument("--hash-seed", type=int, help="PYTHONHASHSEED of the official run (default: drawn at random, as "
                   "Python does; with --align: searched)")
    p.add_argument("--hash-seed-limit", type=int, default=3000, help="--align: hash seeds tried")
    p.add_argument("--gpo-ray", type=Path, default=ROOT, help="the gpo-ray checkout whose preset runs (default: this one)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, help="output folder (default: a new temp folder)")
    p.add_argument("--python", default=sys.executable, help="interpreter of both runs (gpo-ray's venv)")
    args = p.parse_args(argv)

    official = args.official.resolve()
    if not (official / "GPO.sh").is_file() or not (official / "src" / "optimization" / "main.py").is_file():
        p.error(f"{official} is not a copy of RUCAIBox/GPO (GPO.sh and src/optimization/main.py expected)")
    out = (args.out or Path(tempfile.mkdtemp(prefix="paper-diff-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = task_files(args.data_dir, args.task)
    family, _, sub = args.task.partition("/")
    official_data = official / "data" / {"bbh": "BIG-Bench-Hard"}.get(family, family) / sub
    same_data = all((official_data / f"{s}.jsonl").read_bytes() == (args.data_dir / official_data.relative_to(
        official / "data") / f"{s}.jsonl").read_bytes() for s in ("train", "eval", "test", "format"))

    fake_a, fake_b = make_fake(files), make_fake(files)
    url_a, url_b = fake_a.start(), fake_b.start()
    print(f"fake A (official) {url_a}, fake B (gpo-ray) {url_b}; output in {out}", flush=True)
    try:
        print("running gpo-ray's preset ...", flush=True)
        gpo = run_gpo_ray(gpo_root=args.gpo_ray.resolve(), base_url=url_b, task=args.task, epochs=args.epochs,
                          data_dir=args.data_dir.resolve(), out=out, python=args.python)
        records_b = list(fake_b.server.records)
        seed = 0
        candidates = 8
        steps = len(gpo_steps(gpo["results"], args.task))
        table = seed_table(seed, args.task, steps, candidates)
        opt_b = [r for r in records_b if classify(r) == "optimizer"]
        slots_b, unmatched_b = index_optimizer(opt_b, table)
        gpo_views = gpo_steps(gpo["results"], args.task)
        initial = "Let's think step by step."
        format_indices = None
        hash_seed = args.hash_seed if args.hash_seed is not None else random.randrange(2**32)
        hash_note = "given" if args.hash_seed is not None else "drawn at random, as Python does by default"
        if args.align:
            first = slots_b.get((1, 0))
            format_indices = format_indices_in(message_text(first["body"]), files["format"]) if first else None
            if args.hash_seed is None:
                print("searching a PYTHONHASHSEED that reproduces gpo-ray's tie-breaks ...", flush=True)
                found = find_hash_seed(gpo_views, slots_b, initial, args.hash_seed_limit, args.python)
                hash_seed = found if found is not None else 0
                hash_note = (f"searched: the first of 0..{args.hash_seed_limit - 1} under which the official rule "
                             "picks gpo-ray's choice at every step" if found is not None else
                             f"none of 0..{args.hash_seed_limit - 1} reproduces gpo-ray's choices; 0 used")
        print(f"running the official loop (PYTHONHASHSEED={hash_seed}) ...", flush=True)
        off = run_official(official=official, base_url=url_a, task=args.task, epochs=args.epochs, out=out,
                           python=args.python, hash_seed=hash_seed, format_indices=format_indices,
                           gpo_root=args.gpo_ray.resolve(), seed=seed, candidates=candidates)
        records_a = list(fake_a.server.records)
    finally:
        fake_a.close()
        fake_b.close()
    for name, records in (("requests-official.jsonl", records_a), ("requests-gpo-ray.jsonl", records_b)):
        with open(out / name, "w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    cmp = Comparison()
    opt_a = [r for r in records_a if classify(r) == "optimizer"]
    slots_a, unmatched_a = index_optimizer(opt_a, table)
    for side, unmatched in (("official", unmatched_a), ("gpo-ray", unmatched_b)):
        for r in unmatched:
            cmp.add("optimizer request unmatched", side, f"seed {r['body'].get('seed')!r} is no (step, index) "
                    f"of this run: {message_text(r['body'])[:80]!r}")
    steps_per_epoch = steps // args.epochs if args.epochs else steps
    off_views = official_steps(off["results"], slots_a, steps_per_epoch)
    step_causes = diff_steps(cmp, off_views, gpo_views)
    # Causes of optimizer-text differences: the step's state differs once an earlier choice did.
    diff_optimizer_requests(cmp, slots_a, slots_b, step_causes, files["format"])
    first_a, first_b = slots_a.get((1, 0)), slots_b.get((1, 0))
    if first_a and first_b:
        cmp.notes.append(f"format exemplars shown: official {format_indices_in(message_text(first_a['body']), files['format'])}"
                         f", gpo-ray {format_indices_in(message_text(first_b['body']), files['format'])}")
    questions = {ex["input"].strip(): split for split in ("test", "eval", "train") for ex in files[split]}
    group_causes = task_group_causes(off_views, gpo_views, step_causes, initial)
    task_a = [r for r in records_a if classify(r).startswith("task_")]
    task_b = [r for r in records_b if classify(r).startswith("task_")]
    diff_task_requests(cmp, task_a, task_b, questions, group_causes)
    probes = [r for r in records_a if classify(r) == "probe"]
    cmp.notes.append(f"{len(probes)} official start-up probe request(s) ('{PROBE}') left out of the comparison")
    others = [r for r in records_a + records_b if classify(r) == "other"]
    if others:
        cmp.notes.append(f"{len(others)} requests neither optimizer nor task (feedback/summarize) not compared")

    report = {
        "task": args.task, "epochs": args.epochs, "align": args.align,
        "setup": {
            "harness command": "python -m benchmarks.paper_diff " + " ".join(map(shlex.quote, argv if argv is not None
                                                                               else sys.argv[1:])),
            "official command": (out / "official-command.txt").read_text().strip(),
            "official copy": str(official),
            "gpo-ray checkout": str(args.gpo_ray.resolve()),
            "gpo-ray config": json.dumps({k: v for k, v in gpo["config"].items() if k not in ("run_dir", "data_dir")}),
            "PYTHONHASHSEED": f"{hash_seed} ({hash_note})",
            "format exemplars forced": str(format_indices) if format_indices is not None else "no (the official draw)",
            "data": "the official copy's task files equal --data-dir's" if same_data else
                    "the official copy's task files DIFFER from --data-dir's",
            "requests recorded": f"official {len(records_a)}, gpo-ray {len(records_b)}",
            "seconds": f"official {off['seconds']}, gpo-ray {gpo['seconds']}",
        },
        "counts": cmp.counts,
        "differences": [asdict(d) for d in cmp.differences],
        "notes": cmp.notes,
        "steps": {"official": [asdict(v) for v in off_views], "gpo-ray": [asdict(v) for v in gpo_views]},
    }
    (out / "paper_diff.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    md = render_markdown(report)
    (out / "paper_diff.md").write_text(md)
    print(md)
    print(f"report: {out / 'paper_diff.md'}, {out / 'paper_diff.json'}")
    return 1 if cmp.differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
