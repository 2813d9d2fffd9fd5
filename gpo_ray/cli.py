"""The `gpo-ray` command: parse, validate, print. Nothing else lives here.

Exit codes: 0 done, 2 bad input (config, data, arguments, an unreachable Ray address), 1 failure after retries,
130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gpo_ray.errors import GpoError, RunInterrupted
from gpo_ray.loopback import LOOPBACK_HOST, is_loopback
from gpo_ray.vocabulary import ConfigRole, Role

if TYPE_CHECKING:
    from gpo_ray.api import Results


def one_line(message: str) -> str:
    """An error as one printable line: a newline or control character in something the user typed shows escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


class _Parser(argparse.ArgumentParser):
    """argparse, whose error line stays one line whatever was typed (subcommand parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        super().error(one_line(message))


def _common_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", type=Path,
                   help="run config (YAML or TOML), or example:NAME for a shipped example (gpo-ray examples)")
    p.add_argument("--task", action="append", dest="tasks", metavar="NAME",
                   help="task name or glob (bbh/navigate, mmlu/*, gsm8k, example/reviews); repeatable")
    p.add_argument("--data-dir", type=Path, help="folder with the GPO benchmarks (BIG-Bench-Hard/, MMLU/, ...)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--candidates", type=int, help="candidates per step")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--answer-extraction", choices=("single", "second_turn"),
                   help="second_turn: ask the task model again for its final answer, as the paper's code does")
    p.add_argument("--preset", choices=("paper",),
                   help="paper: every setting as the official GPO code runs it (your file and flags still win)")


def _endpoint_args(p: argparse.ArgumentParser) -> None:
    """Which endpoints and models the roles use; each role keeps its own sampling settings (config.ROLE_DEFAULTS)."""
    p.add_argument("--base-url", help="OpenAI-compatible endpoint for every role (default: the embedded local model)")
    p.add_argument("--model", help="model name at --base-url")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    p.add_argument("--optimizer-base-url", help="endpoint for the optimizer role only")
    p.add_argument("--optimizer-model", help="model for the optimizer role only")
    p.add_argument("--max-in-flight", type=int, help="at most this many requests in flight to each endpoint, whole "
                   "run, per role (default 128, the embedded model 8; the limit is learned below it)")


def _optimize_args(p: argparse.ArgumentParser) -> None:
    _endpoint_args(p)
    p.add_argument("--run-dir", type=Path,
                   help="where checkpoints and results go (default: runs/<time>-<id>, e.g. runs/20261201-151500-a1b2)")
    p.add_argument("--address", help="Ray cluster address ('auto' joins a running one; default RAY_ADDRESS or a new local cluster)")
    p.add_argument("--refiners", type=int, help="number of refiner actors")
    p.add_argument("--evaluators", type=int, help="number of evaluator actors")
    _output_args(p)


def _output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true", help="print only the final summary")
    g.add_argument("--json-logs", action="store_true", help="JSON log lines on stderr instead of a progress display")


REPORT_FORMATS = ("html", "md")
EXPORT_FORMATS = ("json", "yaml")
_SUFFIX_FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json",
                   ".yaml": "yaml", ".yml": "yaml"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpo-ray", description="Distributed GPO prompt optimization on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="print steps, edit budgets and estimated LLM calls/tokens per task (or per "
                                    "variant of a sweep's grid)")
    _common_task_args(p)
    _endpoint_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--show-meta-prompt", action="store_true",
                   help="print each task's step-1 optimizer request as it would be sent")

    p = sub.add_parser("check", help="score the initial prompt on a few examples: each reply, score and the metric's "
                                     "feedback, and what a full run would cost")
    _common_task_args(p)
    _endpoint_args(p)
    p.add_argument("--examples", type=int, default=5, metavar="N", help="the first N examples of the split (default 5)")
    p.add_argument("--split", choices=("train", "eval", "test"), default="eval", help="default eval")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")

    p = sub.add_parser("optimize", help="optimize the prompts of one or more tasks")
    _common_task_args(p)
    _optimize_args(p)

    p = sub.add_parser("sweep", help="a grid of variants x tasks x seeds as one job on one Ray cluster (ablations)")
    _common_task_args(p)
    _optimize_args(p)
    p.description = ("GRID: a YAML/TOML grid file (base:, variants: or axes:, seeds:). The flags override the "
                     "grid's base config; --seed runs that one seed; --run-dir is the sweep directory.")

    p = sub.add_parser("resume", help="continue an interrupted run (or sweep) from its last completed step")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--address")
    _output_args(p)

    p = sub.add_parser("report", help="an HTML (or markdown) report of a run or a sweep, finished or in progress")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=REPORT_FORMATS, help="html or md (default: from --output's suffix, else html)")
    p.add_argument("--output", type=Path, help="file to write, '-' for stdout (default RUN_DIR/report.html or .md)")

    p = sub.add_parser("export", help="the best prompt per task as JSON or YAML, for loading into an application")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=EXPORT_FORMATS, help="json or yaml (default: from --output's suffix, else json)")
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")

    p = sub.add_parser("examples", help="list the shipped examples (run one as example:NAME), or copy one to start "
                                        "your own task from")
    p.add_argument("--copy", nargs=2, metavar=("NAME", "DIR"), help="copy example NAME's folder to DIR (a new folder)")

    p = sub.add_parser("fake-llm", help="serve the deterministic fake OpenAI-compatible endpoint (tests, benchmarks)")
    p.add_argument("--host", default=LOOPBACK_HOST)
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--config", type=Path, help="fake endpoint behaviour (YAML/JSON)")

    p = sub.add_parser("doctor", help="check that the embedded model answers and the embedder works (setup ends with it)")
    p.add_argument("--log-dir", type=Path, help="keep the embedded server's log here (default: shown on failure, then removed)")

    p = sub.add_parser("serve-local", help="serve the embedded SmolLM2 model as an OpenAI-compatible endpoint")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log", type=Path, help="append the server's log to this file (default runs/serve-local.log)")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested dict that is merged over the config file (None = not given)."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    both = {"base_url": g("base_url"), "model": g("model"), "api_key_env": g("api_key_env"),
            "max_in_flight": g("max_in_flight")}
    opt = dict(both)
    if g("optimizer_base_url") is not None:
        opt["base_url"] = g("optimizer_base_url")
    if g("optimizer_model") is not None:
        opt["model"] = g("optimizer_model")
    return {
        "preset": g("preset"),
        "tasks": g("tasks"),
        "data_dir": str(g("data_dir")) if g("data_dir") else None,
        "run_dir": str(g("run_dir")) if g("run_dir") else None,
        "task_model": both,
        "optimizer_model": opt,
        "judge_model": dict(both),  # a judge metric's judge: the same endpoint unless the config names its own
        "optimizer": {"epochs": g("epochs"), "candidates": g("candidates"), "batch_size": g("batch_size"),
                      "seed": g("seed"), "answer_extraction": g("answer_extraction")},
        "cluster": {"address": g("address"), "num_refiners": g("refiners"), "num_evaluators": g("evaluators")},
    }


def without_none(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = without_none(v)
            if not v:
                continue
        if v is not None:
            out[k] = v
    return out


def _grid_file(path: Path | None) -> bool:
    """Whether the file is a sweep's grid (base:, variants:, axes:) rather than a run config."""
    from gpo_ray.config import read_config_file
    from gpo_ray.grid import is_grid_file

    return path is not None and path.is_file() and is_grid_file(read_config_file(path))


def _load_grid(args: argparse.Namespace):
    from gpo_ray.errors import ConfigError
    from gpo_ray.grid import load_grid

    if args.config is None:
        raise ConfigError("a sweep needs a GRID file (base:, variants: or axes:, seeds:); see examples/sweep.yaml")
    overrides = without_none(overrides_from_args(args))
    overrides.get("optimizer", {}).pop("seed", None)  # --seed picks the grid's seeds instead
    return load_grid(args.config, overrides=overrides, seed=args.seed)


def cmd_plan(args: argparse.Namespace) -> int:
    from gpo_ray.config import concurrency_settings, load_config, sampling_settings
    from gpo_ray.core.plan import SCORE_PLACEHOLDER, plan_task, step1_meta_prompt
    from gpo_ray.tasks.registry import resolve_tasks

    if _grid_file(args.config):
        return _plan_grid(args)
    config = load_config(args.config, overrides=without_none(overrides_from_args(args)))
    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    plans = [
        plan_task(t, config.optimizer, optimizer_max_tokens=config.optimizer_model.max_tokens or 256,
                  task_max_tokens=config.task_model.max_tokens or 256,
                  judge_max_tokens=config.judge_model.max_tokens or 256)
        for t in tasks
    ]
    sampling = sampling_settings(config)
    if getattr(args, "show_meta_prompt", False):
        structured = config.optimizer_model.uses_structured_output
        metas = {t.name: step1_meta_prompt(t, config.optimizer, structured=structured) for t in tasks}
        if args.json:
            print(json.dumps({"score_placeholder": SCORE_PLACEHOLDER, "sampling": sampling, "meta_prompts": metas},
                             indent=2))
            return 0
        method = config.optimizer.method
        if method in ("ape", "opro"):
            print(f"The step-1 optimizer request per task (method {method}), as it will be sent (the first of "
                  f"{config.optimizer.candidates} samples); what it cannot know before the run is said in <...>.")
        elif method == "apo":
            print("The step-1 gradient request per task (method apo), the minibatch's wrong examples known once the "
                  "run starts; then its edit and paraphrase requests (`gpo-ray plan` counts them).")
        else:
            print(f"The step-1 optimizer request per task, as it will be sent ({config.optimizer.candidates} times "
                  f"per step); {SCORE_PLACEHOLDER} stands for the initial prompt's eval score, known once the run "
                  "starts.")
        print(describe_sampling(sampling))
        for name, meta in metas.items():
            print(f"\n===== {name} =====\n{meta}")
        return 0
    if args.json:
        total = {k: sum(getattr(p, k) for p in plans)
                 for k in ("optimizer_calls", "task_model_calls", "second_turn_calls", "optimizer_tokens",
                           "task_model_tokens", "feedback_calls", "summarize_calls", "feedback_scoring_calls",
                           "trace_scoring_calls", "judge_calls", "judge_tokens")}
        print(json.dumps({"sampling": sampling, "concurrency": concurrency_settings(config),
                          "tasks": {p.task: p.to_dict() for p in plans}, "total": total}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gpo-ray plan", show_lines=False)
    for col in ("task", "train/eval/test", "steps T", "edit budget N(t)", "optimizer calls", "task calls", "tokens (est.)"):
        table.add_column(col, overflow="fold")
    for p in plans:
        table.add_row(p.task, f"{p.train}/{p.eval}/{p.test}", str(p.steps), " ".join(map(str, p.edit_budget)),
                      f"{p.optimizer_calls:,}" + _included((p.feedback_calls, "feedback"),
                                                           (p.summarize_calls, "summarize"),
                                                           *((n, kind) for kind, n in p.method_calls.items())),
                      f"{p.task_model_calls:,}" + _included((p.second_turn_calls, "second turns"),
                                                            (p.feedback_scoring_calls, "feedback scoring"),
                                                            (p.trace_scoring_calls, "trace scoring")),
                      f"{p.optimizer_tokens + p.task_model_tokens + p.judge_tokens:,}")
    console = Console()
    console.print(table)
    console.print(f"total: {sum(p.optimizer_calls for p in plans):,} optimizer calls, "
                  f"{sum(p.task_model_calls for p in plans):,} task-model calls"
                  + (f" ({second:,} of them second turns)" if (second := sum(p.second_turn_calls for p in plans)) else "")
                  + (f", {judged:,} judge calls" if (judged := sum(p.judge_calls for p in plans)) else "")
                  + ", about "
                  f"{sum(p.optimizer_tokens + p.task_model_tokens + p.judge_tokens for p in plans):,} tokens "
                  "(completions at max_tokens)")
    console.print(describe_sampling(sampling), highlight=False)
    console.print(describe_concurrency(concurrency_settings(config)), highlight=False)
    return 0


def describe_concurrency(settings: dict[str, dict[str, Any]]) -> str:
    """"calls in flight per endpoint: task_model at most 128 (default), adaptive from 4; ..." (the report says where
    each settled)."""
    def one(role: str, s: dict[str, Any]) -> str:
        cap = f"at most {s['max_in_flight']}" + ("" if s["set"] else " (default)")
        how = f"adaptive, starting at {s['start']} per actor" if s["adaptive"] else "fixed"
        return f"{role} {cap}, {how}"
    return ("calls in flight per endpoint, whole run: " + "; ".join(one(r, s) for r, s in settings.items())
            + " (where each settled: `gpo-ray report`)")


def describe_sampling(sampling: dict[str, dict[str, Any]]) -> str:
    """"sampling: optimizer_model gpt-4o-mini at temperature 1.0, max_tokens 256; task_model ..." (None: no cap)."""
    def one(role: str, s: dict[str, Any]) -> str:
        cap = "no max_tokens" if s["max_tokens"] is None else f"max_tokens {s['max_tokens']}"
        return f"{role} {s['model'] or '(model not named)'} at temperature {s['temperature']}, {cap}"
    return "sampling: " + "; ".join(one(role, s) for role, s in sampling.items())


def _included(*parts: tuple[int, str]) -> str:
    """" (incl. 16 feedback, 15 summarize)": the parts of a plan's total that are not zero."""
    said = [f"{n:,} {label}" for n, label in parts if n]
    return f" (incl. {', '.join(said)})" if said else ""


def _plan_grid(args: argparse.Namespace) -> int:
    from gpo_ray.sweep import plan_grid

    plan = plan_grid(_load_grid(args))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gpo-ray plan (sweep)")
    for col in ("variant", "seeds", "tasks", "optimizer calls", "task calls", "tokens (est.)",
                "optimizer temp/max", "task temp/max"):
        table.add_column(col, overflow="fold")
    for v in plan.variants:
        table.add_row(v.variant, str(v.seeds), str(len(v.tasks)), f"{v.total('optimizer_calls'):,}",
                      f"{v.total('task_model_calls'):,}",
                      f"{v.total('optimizer_tokens') + v.total('task_model_tokens') + v.total('judge_tokens'):,}",
                      *(f"{v.sampling[r]['temperature']} / {v.sampling[r]['max_tokens']}"
                        for r in (ConfigRole.OPTIMIZER_MODEL, ConfigRole.TASK_MODEL)))
    console = Console()
    console.print(table)
    console.print(f"total: {plan.total('optimizer_calls'):,} optimizer calls, {plan.total('task_model_calls'):,} "
                  f"task-model calls, about {plan.total('optimizer_tokens') + plan.total('task_model_tokens'):,} "
                  "tokens (completions at max_tokens), as if each variant ran alone; the shared response cache "
                  f"answers at least {plan.shared_task_model_calls:,} of the task-model calls once for several "
                  "variants (the initial prompt's scores), and any other request two variants send alike")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gpo_ray.check import check
    from gpo_ray.config import load_config
    from gpo_ray.errors import ConfigError

    if _grid_file(args.config):
        raise ConfigError(f"{args.config} is a sweep's grid: `gpo-ray check` takes a run config (or --task); "
                          "`gpo-ray plan GRID` shows what the grid costs")
    config = load_config(args.config, overrides=without_none(overrides_from_args(args)))
    result = check(config, examples=args.examples, split=args.split)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    for t in result.tasks:
        print(f"{t.task}: the initial prompt {t.prompt!r} on the first {len(t.examples)} {t.split} examples, "
              f"scored by {t.metric}")
        for e in t.examples:
            print(f"\n  [{e.id}] " + (f"metric error: {e.metric_error}" if e.metric_error is not None
                                      else f"score {e.score:.3f}"))
            print(f"    input:    {shortened(e.input)}")
            first, *more = e.reply.splitlines() or [""]
            print(f"    reply:    {first}")
            for line in more:
                print(f"              {line}" if line.strip() else "")
            if e.answer.strip() != e.reply.strip():
                print(f"    read as:  {shortened(e.answer)}")
            if e.feedback is not None:
                print(f"    feedback: {one_line(e.feedback)}")
        errors = f" ({t.metric_errors} metric errors, scored 0)" if t.metric_errors else ""
        p = t.plan
        print(f"\n  mean {t.mean:.3f} over {len(t.examples)} examples{errors}")
        judge = f", {p.judge_calls:,} judge calls" if p.judge_calls else ""
        print(f"  a full run: {p.steps} steps, {p.optimizer_calls:,} optimizer calls, {p.task_model_calls:,} task-model "
              f"calls{judge}, about {p.optimizer_tokens + p.task_model_tokens + p.judge_tokens:,} tokens "
              "(`gpo-ray plan` for the details)\n")
    print(f"this check: {result.task_model_requests} task-model requests"
          + (f", {result.judge_requests} judge requests" if result.judge_requests is not None else ""))
    print(describe_sampling(result.sampling))
    return 0


def shortened(text: str, limit: int = 100) -> str:
    """A text as one printable line of at most `limit` characters."""
    line = one_line(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _output_mode(args: argparse.Namespace) -> str:
    return "quiet" if getattr(args, "quiet", False) else "json" if getattr(args, "json_logs", False) else "console"


def cmd_optimize(args: argparse.Namespace) -> int:
    from gpo_ray.api import optimize
    from gpo_ray.config import load_config

    config = load_config(args.config, overrides=without_none(overrides_from_args(args)))
    print_summary(optimize(config, output=_output_mode(args)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from gpo_ray.sweep import sweep

    grid = _load_grid(args)
    print_sweep_summary(sweep(grid, output=_output_mode(args)))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from gpo_ray.api import resume
    from gpo_ray.runtime.sweep_dir import is_sweep_dir

    if is_sweep_dir(args.run_dir):
        from gpo_ray.sweep import resume_sweep

        print_sweep_summary(resume_sweep(args.run_dir, address=args.address, output=_output_mode(args)))
        return 0
    print_summary(resume(args.run_dir, address=args.address, output=_output_mode(args)))
    return 0


def print_summary(results: Results) -> None:
    """Each task's initial and best prompt with their scores, and what the run asked of each role."""
    from rich.console import Console

    console = Console()

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for name, r in results.tasks.items():
        console.print(f"[bold]{name}[/bold]  ({r.status}, {len(r.steps)} steps)")
        console.print(f"  initial  eval {fmt(r.initial_eval_score)}  test {fmt(r.initial_test_score)}  "
                      f"{r.initial_prompt!r}", soft_wrap=True)
        console.print(f"  best     eval {fmt(r.best_eval_score)}  test {fmt(r.best_test_score)}  "
                      f"{r.best_prompt!r}", soft_wrap=True)
    u = results.usage
    console.print(f"usage: optimizer {u.get(Role.OPTIMIZER, {}).get('requests', 0)} requests, task model "
                  f"{u.get(Role.TASK_MODEL, {}).get('requests', 0)} requests"
                  + (f", judge {u[Role.JUDGE].get('requests', 0)} requests" if Role.JUDGE in u else "")
                  + f"; results in {results.run_dir / 'results.json'}")


def print_sweep_summary(results: Any) -> None:
    """The ablation table (best test score per variant and task, mean ± spread over seeds; calls and tokens)."""
    from rich.console import Console
    from rich.table import Table

    from gpo_ray.report.sweep_view import ablation_table, read_sweep

    ablation = ablation_table(read_sweep(results.sweep_dir))
    table = Table(title=f"gpo-ray sweep: {results.sweep_dir.name} ({results.status})")
    for col in ablation.columns:
        table.add_column(col, no_wrap=True)
    for row in ablation.rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a file or pipe: the whole table on one line per variant
        console = Console(width=max(console.width, 240))
    console.print(table)
    console.print(f"{ablation.note}; sub-runs in {results.sweep_dir / 'runs'}, "
                  f"`gpo-ray report {results.sweep_dir}` writes the report with the plot")


def _format_for(args: argparse.Namespace, choices: tuple[str, ...]) -> str:
    """--format, else the one --output's suffix names, else the first choice."""
    if args.format:
        return args.format
    by_suffix = _SUFFIX_FORMATS.get(args.output.suffix.lower()) if args.output else None
    return by_suffix if by_suffix in choices else choices[0]


def _emit(text: str, output: Path | None) -> None:
    from gpo_ray.report.output import write_text_file

    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    write_text_file(output, text)
    print(output)


def cmd_report(args: argparse.Namespace) -> int:
    from gpo_ray.report import read_run, render_html, render_markdown

    fmt = _format_for(args, REPORT_FORMATS)
    from gpo_ray.runtime.sweep_dir import is_sweep_dir

    if is_sweep_dir(args.run_dir):
        from gpo_ray.report.render_sweep import render_sweep_html, render_sweep_markdown
        from gpo_ray.report.sweep_view import read_sweep

        view = read_sweep(args.run_dir)
        text = render_sweep_html(view) if fmt == "html" else render_sweep_markdown(view)
        _emit(text, args.output or args.run_dir / f"report.{fmt}")
        return 0
    run = read_run(args.run_dir)
    text = render_html(run) if fmt == "html" else render_markdown(run)
    _emit(text, args.output or args.run_dir / f"report.{fmt}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gpo_ray.report import best_prompts_document, dump_best_prompts, read_run

    fmt = _format_for(args, EXPORT_FORMATS)
    run = read_run(args.run_dir, resolve_data=False)
    _emit(dump_best_prompts(best_prompts_document(run), format=fmt), args.output)
    return 0


def cmd_examples(args: argparse.Namespace) -> int:
    import shutil

    from gpo_ray.errors import ConfigError
    from gpo_ray.examples import (
        CONFIG_PREFIX,
        example_config,
        shipped_examples,
        summary,
    )

    if args.copy is None:
        for name, config in shipped_examples().items():
            print(f"{CONFIG_PREFIX}{name:<10} {summary(config)}")
            print(f"{'':{len(CONFIG_PREFIX) + 10}} {config}")
        print("\nrun one: gpo-ray check example:NAME, gpo-ray optimize example:NAME; "
              "start your own from a copy: gpo-ray examples --copy NAME DIR")
        return 0
    name, target = args.copy
    source = example_config(name).parent
    destination = Path(target)
    if destination.exists():
        raise ConfigError(f"{destination} exists: --copy writes a new folder")
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    print(f"copied example {name} to {destination}: gpo-ray check {destination / source.name}.yaml")
    return 0


def cmd_fake_llm(args: argparse.Namespace) -> int:
    from gpo_ray.errors import ConfigError
    from gpo_ray.testing.server import run_fake_llm

    if not is_loopback(args.host):
        raise ConfigError(f"--host {args.host!r}: the fake endpoint listens on loopback only "
                          f"(e.g. {LOOPBACK_HOST}, ::1, localhost)")
    run_fake_llm(host=args.host, port=args.port, config_path=args.config)
    return 0


def cmd_serve_local(args: argparse.Namespace) -> int:
    from gpo_ray.llm.local_server import SERVE_LOCAL_LOG, serve_forever

    serve_forever(port=args.port, log_path=args.log or SERVE_LOCAL_LOG)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from gpo_ray.llm.doctor import run_checks

    if run_checks(log_dir=args.log_dir):
        print("gpo-ray doctor: the embedded model and the embedder work on this machine")
        return 0
    print("gpo-ray doctor: a check failed (see above)", file=sys.stderr)
    return 1


COMMANDS = {"plan": cmd_plan, "check": cmd_check, "optimize": cmd_optimize, "sweep": cmd_sweep, "resume": cmd_resume, "report": cmd_report,
            "examples": cmd_examples,
            "export": cmd_export, "fake-llm": cmd_fake_llm, "serve-local": cmd_serve_local,
            "doctor": cmd_doctor}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gpo_ray.logs import configure_logging
    from gpo_ray.runtime.signals import TerminationHandler

    configure_logging(mode="json" if getattr(args, "json_logs", False) else "quiet")
    # SIGTERM (kubectl delete pod, timeout) stops a command as Ctrl-C does, and exits with the shell's code for it.
    with TerminationHandler().installed() as stop:
        try:
            code = COMMANDS[args.command](args)
        except GpoError as e:
            print(f"gpo-ray: error: {one_line(str(e))}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            stop.note_interrupt()
            what = "terminated (SIGTERM)" if stop.received == signal.SIGTERM else "interrupted"
            resume_hint = f"; {e}" if isinstance(e, RunInterrupted) else ""
            print(f"gpo-ray: {what}{resume_hint}", file=sys.stderr)
            return stop.exit_code
    return stop.exit_code if stop.received is not None else code  # fake-llm, serve-local: stopped cleanly


if __name__ == "__main__":
    sys.exit(main())
