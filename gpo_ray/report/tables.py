"""The report's tables as plain text cells, shared by the HTML and markdown renderers (which only escape and
lay them out), so both formats always say the same thing."""

from __future__ import annotations

from statistics import median
from typing import Any

from gpo_ray.report.run_view import RunView, TaskView, Timing

TASK_COLUMNS = ("task", "status", "steps", "initial eval", "best eval", "Δ eval", "initial test", "best test",
                "best step")
USAGE_COLUMNS = ("role", "calls", "requests", "prompt tokens", "completion tokens", "total tokens", "cache hits",
                 "retries", "errors")
STEP_COLUMNS = ("step", "edit budget", "edit distance", "eval score", "candidates", "candidate min / median / max",
                "extra calls")
# The design-space variants' extra calls a step records (core/variants.py), as the report names them.
GRADED_COLUMNS = ("example", "score", "input", "reply", "metric's feedback")
EXTRA_CALLS = (("feedback_calls", "feedback"), ("feedback_scoring_calls", "feedback scoring"),
               ("summarize_calls", "summarize"), ("trace_scoring_calls", "trace scoring"))


def score(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def steps_progress(task: TaskView) -> str:
    return f"{task.steps_done}/{task.total_steps if task.total_steps is not None else '?'}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def wall_time(t: Timing) -> str:
    if t.source == "results":
        return f"{duration(t.wall_time_s)} (summed over the first run and its resumes)"
    if t.source == "log":
        return f"{duration(t.wall_time_s)} (first to last log event, pauses between resumes included)"
    return "unknown"


def task_row(task: TaskView) -> list[str]:
    initial, best = task.initial, task.best
    delta = best.eval_score - initial.eval_score if initial and best else None
    return [task.name, task.status, steps_progress(task), score(initial.eval_score if initial else None),
            score(best.eval_score if best else None), signed(delta), score(task.initial_test_score),
            score(task.best_test_score), "–" if best is None else str(best.step)]


def _second_turns(run: RunView) -> bool:
    opt = run.config.get("optimizer")
    return isinstance(opt, dict) and opt.get("answer_extraction") == "second_turn"


def usage_rows(run: RunView) -> list[list[str]]:
    # With second-turn answer extraction, the task model's calls include the second turns (two per example).
    label = {"task_model": "task_model (incl. second turns)"} if _second_turns(run) else {}
    rows = [_usage_row(label.get(role, role), u) for role, u in sorted(run.usage.items())]
    if len(rows) > 1:
        total: dict[str, Any] = {"errors": {}}
        for u in run.usage.values():
            for k, v in u.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = total.get(k, 0) + v
            for kind, n in (u.get("errors") or {}).items():
                total["errors"][kind] = total["errors"].get(kind, 0) + n
        rows.append(_usage_row("total", total))
    return rows


ENDPOINT_COLUMNS = ("role", "endpoint", "requests", "share", "ejections")


def endpoint_rows(run: RunView) -> list[list[str]]:
    """A role with several endpoints: each one's requests, its share of the role's, and how often it was ejected
    (llm/balance.py). Empty when every role has one endpoint."""
    rows = []
    for role, u in sorted(run.usage.items()):
        sent, ejected = u.get("endpoints") or {}, u.get("ejections") or {}
        total = sum(sent.values())
        for url in sorted(set(sent) | set(ejected)):
            share = f"{sent.get(url, 0) / total:.0%}" if total else "–"
            rows.append([role, url, f"{sent.get(url, 0):,}", share, str(ejected.get(url, 0))])
    return rows


CONCURRENCY_COLUMNS = ("role", "endpoint", "settled (calls in flight at the end)", "lowest", "highest", "cap")
CONCURRENCY_HEADING = "Concurrency each endpoint settled at (adaptive_concurrency; summed over the role's actors)"


def concurrency_rows(run: RunView) -> list[list[str]]:
    """Per role and endpoint, the adaptive limit of calls in flight (llm/concurrency.py): at the end, the lowest, the
    highest and the cap. Empty when no role had adaptive_concurrency on."""
    rows = []
    for role, u in sorted(run.usage.items()):
        for url, level in sorted((u.get("concurrency") or {}).items()):
            rows.append([role, url, *(str(level.get(k, "–")) for k in ("limit", "min", "max", "cap"))])
    return rows


def _usage_row(role: str, u: dict[str, Any]) -> list[str]:
    def n(key: str) -> str:
        v = u.get(key)
        return f"{int(v):,}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"

    tokens = u.get("total_tokens")
    if not isinstance(tokens, (int, float)):
        tokens = int(u.get("prompt_tokens", 0) or 0) + int(u.get("completion_tokens", 0) or 0)
    errors = u.get("errors") or {}
    error_text = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) if errors else "0"
    return [role, n("calls"), n("requests"), n("prompt_tokens"), n("completion_tokens"), f"{int(tokens):,}",
            n("cache_hits"), n("retries"), error_text]


def step_rows(task: TaskView) -> list[list[str]]:
    distances = task.edit_distances()
    rows = []
    for s in task.steps:
        cand = [c.score for c in s.candidates]
        spread = f"{min(cand):.3f} / {median(cand):.3f} / {max(cand):.3f}" if cand else "–"
        rows.append([str(s.step), "–" if s.step == 0 else str(s.edit_budget),
                     "–" if s.step == 0 else str(distances[s.step - 1]), score(s.eval_score), str(len(cand)), spread,
                     extra_calls(s.counts)])
    return rows


def extra_calls(counts: dict[str, int]) -> str:
    """A step's feedback / summarize calls and the feedback's task-model scoring, or "–" when it made none."""
    made = [f"{label} {counts[key]}" for key, label in EXTRA_CALLS if counts.get(key)]
    return ", ".join(made) if made else "–"


def variant(opt: dict[str, Any]) -> str:
    """The optimizer's design-space variant; a key an older run's config lacks reads as its default."""
    momentum = opt.get("momentum") if isinstance(opt.get("momentum"), dict) else {}
    return (f"direction {opt.get('direction', 'none')}, momentum {momentum.get('content', 'prompts')} "
            f"({momentum.get('update', 'retrieve')}), update {opt.get('update', 'generate')}, "
            f"budget in prompt {'yes' if opt.get('budget_in_prompt', True) else 'no'}, "
            f"meta-prompt {opt.get('meta_prompt_style', 'own')}")


def run_facts(run: RunView) -> list[tuple[str, str]]:
    """Label/value pairs describing the run, for the page header."""
    opt = run.config.get("optimizer", {}) if isinstance(run.config.get("optimizer"), dict) else {}
    sched = opt.get("schedule", {}) if isinstance(opt.get("schedule"), dict) else {}

    def model(role: str) -> str:
        r = run.config.get(role)
        return str(r.get("model") or "embedded") if isinstance(r, dict) else "–"

    facts = [
        ("run directory", str(run.path)),
        ("status", run.status),
        ("fingerprint", run.fingerprint or "–"),
        ("tasks", str(len(run.tasks))),
        ("started", run.timing.started_at or "unknown"),
        ("last update", run.timing.updated_at or "unknown"),
        ("wall time", wall_time(run.timing)),
        ("models", f"optimizer {model('optimizer_model')}, task {model('task_model')}"
                   + (f", judge {model('judge_model')}" if "judge" in run.usage else "")),
    ]
    rival = opt.get("method") in ("ape", "apo", "opro")  # a rival optimizer: GPO's variant and budget do not apply
    if opt and rival:
        own = opt.get(opt["method"]) if isinstance(opt.get(opt["method"]), dict) else {}
        settings = ", ".join(f"{k} {v}" for k, v in own.items())
        facts.append(("optimizer", f"method {opt['method']} ({settings}), epochs {opt.get('epochs')}, batch size "
                                   f"{opt.get('batch_size')}"
                                   + ("" if opt["method"] == "apo" else f", candidates {opt.get('candidates')}")
                                   + f", prompt placement {run.placement}"))
    elif opt:
        facts.append(("optimizer", f"epochs {opt.get('epochs')}, batch size {opt.get('batch_size')}, "
                                   f"candidates {opt.get('candidates')}, candidate scoring {run.candidate_scoring}, "
                                   f"prompt placement {run.placement}"
                                   + (f", method {opt['method']}" if opt.get("method", "gpo") != "gpo" else "")))
        facts.append(("variant", variant(opt)))
    if opt.get("answer_extraction") or opt.get("metric_variants"):
        variants = ", ".join(f"{k} {v}" for k, v in sorted((opt.get("metric_variants") or {}).items()))
        facts.append(("scoring", f"answer extraction {opt.get('answer_extraction') or 'single'}"
                                 + (f"; metric variants: {variants}" if variants else "")))
    if sched and not rival:
        facts.append(("edit budget", f"{sched.get('kind')} {sched.get('initial')} → {sched.get('final')} words"
                                     + (f", warmup {sched['warmup_steps']}" if sched.get("warmup_steps") else "")))
    return facts


def graded_rows(task: TaskView) -> list[list[str]]:
    """The best prompt's lowest-scored test examples, as a metric of the user's own graded them."""
    return [[g.example_id or "–", score(g.score), g.input, g.reply, g.feedback or "–"]
            for g in task.lowest_test_examples]


GRADED_HEADING = "The best prompt's lowest-scored test examples"
