"""The parts of a sweep that need no Ray: the grid file, usage per account, pools routed by content, the plan of a
grid, and the ablation table a user reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gpo_ray.cli import main
from gpo_ray.controller.pools import EvaluatorPool, EvaluatorPoolView, RefinerPool, RefinerPoolView
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.errors import ConfigError
from gpo_ray.grid import grid_from_dict, load_grid
from gpo_ray.llm.accounting import CURRENT_ACCOUNT, AccountedCounters, AccountingClient
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage, user_message
from gpo_ray.report.render_sweep import render_sweep_markdown
from gpo_ray.report.sweep_view import ablation_table, read_sweep
from gpo_ray.runtime.sweep_dir import SweepDirectory
from gpo_ray.sweep import plan_grid
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

BASE = {"tasks": ["example/arithmetic"], "task_model": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
        "optimizer_model": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
        "optimizer": {"epochs": 1, "batch_size": 4, "candidates": 2}}


def grid(**parts):
    return grid_from_dict({"base": BASE, **parts}, folder=Path("."))


# the grid ------------------------------------------------------------------------------------------------------
def test_axes_make_the_cross_product_named_from_their_values(tmp_path):
    g = grid(axes={"optimizer.update": ["generate", "edit"], "optimizer.budget_in_prompt": [True, False]},
             seeds=[0, 3])
    assert list(g.variants) == ["update=generate+budget_in_prompt=true", "update=generate+budget_in_prompt=false",
                                "update=edit+budget_in_prompt=true", "update=edit+budget_in_prompt=false"]
    runs = g.sub_runs(tmp_path / "sw")
    assert [r.name for r in runs][:2] == ["update=generate+budget_in_prompt=true--seed0",
                                          "update=generate+budget_in_prompt=true--seed3"]
    edit_wo = next(r for r in runs if r.name == "update=edit+budget_in_prompt=false--seed3")
    assert (edit_wo.config.optimizer.update, edit_wo.config.optimizer.budget_in_prompt) == ("edit", False)
    assert edit_wo.config.optimizer.seed == 3 and edit_wo.config.optimizer.candidates == 2  # base kept
    assert edit_wo.config.run_dir == tmp_path / "sw" / "runs" / edit_wo.name


def test_named_variants_take_dotted_or_nested_overrides_and_a_preset(tmp_path):
    g = grid(variants={"ours": {}, "recency": {"optimizer.retrieval": "recency"},
                       "fixed": {"optimizer": {"schedule": {"kind": "fixed"}}}, "paper": {"preset": "paper"}})
    configs = {r.variant: r.config for r in g.sub_runs(tmp_path)}
    assert configs["recency"].optimizer.retrieval == "recency"
    assert configs["fixed"].optimizer.schedule.kind == "fixed" and configs["fixed"].optimizer.schedule.initial == 50
    assert configs["paper"].optimizer.meta_prompt_style == "paper"
    assert configs["paper"].optimizer.candidates == 2, "the base's own settings still win over the preset"
    assert configs["paper"].optimizer_model.temperature == 1.0  # per request: may differ between variants


@pytest.mark.parametrize(("parts", "message"), [
    ({"variants": {"bad": {"optimizer.update": "rewrite"}}}, "variant 'bad': invalid config: optimizer.update"),
    ({"variants": {"x": {"tasks": ["bbh/navigate"]}}}, "variant 'x': tasks is shared by every variant"),
    ({"variants": {"x": {"optimizer.seed": 4}}}, "optimizer.seed comes from the grid's seeds"),
    ({"variants": {"a b": {}}}, "variant name 'a b'"),
    ({"variants": {"a": {}, "other-endpoint": {"optimizer_model.base_url": "http://127.0.0.1:2/v1"}}},
     "variant 'other-endpoint': optimizer_model.base_url differs from variant 'a'"),
    ({"variants": {"a": {}}, "axes": {"optimizer.update": ["edit"]}}, "variants or axes, not both"),
    ({"seeds": [1, 1]}, "seeds: each seed once"),
    ({"axes": {"optimizer.schedule": [{"kind": "fixed"}]}}, "name this value"),
    ({"base_config": {}}, "unknown grid setting 'base_config'"),
])
def test_a_bad_grid_is_one_line_naming_what_is_wrong(tmp_path, parts, message):
    with pytest.raises(ConfigError) as e:
        grid(**parts).sub_runs(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_flags_override_the_base_and_seed_picks_one_seed(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps({"base": BASE, "variants": {"a": {}, "b": {"optimizer.candidates": 5}},
                                "seeds": [0, 1]}))
    g = load_grid(path, overrides={"optimizer": {"candidates": 3}}, seed=7)
    configs = {r.name: r.config for r in g.sub_runs(tmp_path / "sw")}
    assert set(configs) == {"a--seed7", "b--seed7"}
    assert configs["a--seed7"].optimizer.candidates == 3 and configs["b--seed7"].optimizer.candidates == 5


def test_base_may_be_a_run_config_file_with_paths_relative_to_it(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.yaml").write_text(json.dumps({**BASE, "data_dir": "data"}))
    g = grid_from_dict({"base": "cfg/run.yaml", "variants": {"a": {}}}, folder=tmp_path)
    assert g.sub_runs(tmp_path / "sw")[0].config.data_dir == (tmp_path / "cfg" / "data").resolve()


# usage per account ------------------------------------------------------------------------------------------------
async def test_usage_is_counted_per_account_and_cache_hits_keep_their_tokens():
    class Endpoint:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            cached = request.messages[0].content == "seen"
            return ChatResponse("x", Usage(7, 3), cached=cached)

    counters = AccountedCounters()
    client = AccountingClient(Endpoint(), counters=counters)

    async def as_account(name, text):
        CURRENT_ACCOUNT.set(name)
        await client.complete(ChatRequest(messages=user_message(text)))

    await asyncio.gather(as_account("a", "new"), as_account("b", "seen"), as_account("b", "seen"))
    await client.complete(ChatRequest(messages=user_message("no account")))
    assert counters.snapshot()["calls"] == 4 and counters.snapshot()["cache_hits"] == 2
    assert counters.snapshot_of("a")["calls"] == 1 and counters.snapshot_of("a")["cache_hits"] == 0
    assert counters.snapshot_of("b")["cache_hits"] == 2 and counters.snapshot_of("b")["cache_hit_tokens"] == 20
    assert counters.snapshot_of("nobody")["calls"] == 0


# pools ----------------------------------------------------------------------------------------------------------
class _Remote:
    def __init__(self, fn):
        self.remote = fn


class _Evaluator:
    def __init__(self):
        self.calls: list[tuple] = []

        async def score(chunk, params=None, account=None):
            self.calls.append((tuple(i.prompt for i in chunk), params, account))
            await asyncio.sleep(0)
            return [1.0] * len(chunk)

        self.score = _Remote(score)


async def test_routed_pool_sends_identical_chunks_of_two_sub_runs_to_one_evaluator():
    handles = [_Evaluator() for _ in range(4)]
    pool = EvaluatorPool(handles, chunk_size=2, route_by_content=True)
    params = TaskModelParams(seed=1)
    a = EvaluatorPoolView(pool, params=params, account="a--seed1")
    b = EvaluatorPoolView(pool, params=params, account="b--seed1")
    examples = [Example(input=f"q{i}", answers=("1",)) for i in range(6)]
    prompts = [f"prompt {i}" for i in range(6)]
    try:
        await asyncio.gather(a.score("t", MetricKind.NUMERIC, prompts, examples),
                             b.score("t", MetricKind.NUMERIC, prompts, examples))
    finally:
        await pool.close()
    for h in handles:  # each chunk went to one actor, under both accounts
        by_chunk: dict[tuple, set] = {}
        for chunk, p, account in h.calls:
            assert p == params
            by_chunk.setdefault(chunk, set()).add(account)
        assert all(accounts == {"a--seed1", "b--seed1"} for accounts in by_chunk.values())
    assert sum(bool(h.calls) for h in handles) > 1, "different chunks spread over the evaluators"


async def test_routed_refiner_pool_names_the_account():
    seen = []

    class Refiner:
        def __init__(self, i):
            async def generate(request, account=None):
                seen.append((i, account))
                return "ok"

            self.generate = _Remote(generate)

    from gpo_ray.core.generation import GenerationRequest
    from gpo_ray.vocabulary import PromptPlacement

    request = GenerationRequest(task="t", step=1, current_prompt="p", retrieved=(), format_examples=(),
                                edit_budget=5, n=2, tried=(), placement=PromptPlacement.END, structured=False)
    pool = RefinerPool([Refiner(i) for i in range(3)], route_by_content=True)
    await RefinerPoolView(pool, account="a").generate(request)
    await RefinerPoolView(pool, account="b").generate(request)
    assert seen[0][0] == seen[1][0] and [s[1] for s in seen] == ["a", "b"]


# plan -----------------------------------------------------------------------------------------------------------
def test_plan_of_a_grid_counts_every_variant_and_seed_and_the_shared_initial_scoring(capsys, tmp_path):
    g = grid(variants={"a": {}, "b": {"optimizer.retrieval": "recency"}}, seeds=[0, 1])
    plan = plan_grid(g)
    single = plan_grid(grid(variants={"a": {}}, seeds=[0]))
    assert plan.total("task_model_calls") == 4 * single.total("task_model_calls")
    assert plan.total("optimizer_calls") == 4 * single.total("optimizer_calls")
    task = single.variants[0].tasks[0]
    # b asks the initial prompt's eval and test scores exactly as a does, seed by seed
    assert plan.shared_task_model_calls == 2 * (task.eval + task.test)

    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"base": BASE, "variants": {"a": {}, "b": {"optimizer.retrieval": "recency"}},
                                "seeds": [0, 1]}))
    capsys.readouterr()
    assert main(["plan", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total"]["task_model_calls"] == plan.total("task_model_calls")
    assert set(printed["variants"]) == {"a", "b"} and printed["variants"]["a"]["seeds"] == 2


# the ablation table -----------------------------------------------------------------------------------------------
def _finished_sweep(tmp_path: Path, scores: dict[str, dict[int, dict[str, float]]], calls: dict[str, int]) -> Path:
    g = grid_from_dict({"base": {**BASE, "tasks": ["example/arithmetic", "example/reviews"]},
                        "variants": {v: {} for v in scores}, "seeds": [0, 1]}, folder=tmp_path)
    runs = g.sub_runs(tmp_path / "sw")
    SweepDirectory(tmp_path / "sw").create(g, runs)
    for run in runs:
        tasks = {t: {"initial_prompt": "p", "initial_eval_score": 0.1, "initial_test_score": 0.1, "best_prompt": "q",
                     "best_eval_score": 0.5, "best_test_score": s, "best_step": 1, "status": "completed",
                     "steps": [{"step": 1, "edit_budget": 5, "prompt": "q", "eval_score": 0.5, "candidates": []}]}
                 for t, s in scores[run.variant][run.seed].items()}
        usage = {"optimizer": {"calls": calls[run.variant], "requests": 1, "prompt_tokens": 10,
                               "completion_tokens": 5, "cache_hit_tokens": 5},
                 "task_model": {"calls": 100, "requests": 50, "prompt_tokens": 0, "completion_tokens": 0}}
        (run.config.run_dir / "results.json").write_text(json.dumps({"status": "completed", "tasks": tasks}))
        (run.config.run_dir / "usage.json").write_text(json.dumps(usage))
    return tmp_path / "sw"


def test_ablation_table_has_variants_as_rows_and_mean_and_spread_over_seeds(tmp_path):
    path = _finished_sweep(tmp_path, {
        "ours": {0: {"example/arithmetic": 0.8, "example/reviews": 0.6}, 1: {"example/arithmetic": 0.6,
                                                                             "example/reviews": 0.6}},
        "no-budget": {0: {"example/arithmetic": 0.5, "example/reviews": 0.3}, 1: {"example/arithmetic": 0.5,
                                                                                  "example/reviews": 0.5}},
    }, calls={"ours": 20, "no-budget": 40})
    table = ablation_table(read_sweep(path))
    assert table.columns[:4] == ["variant", "example/arithmetic", "example/reviews", "mean"]
    rows = {r[0]: dict(zip(table.columns, r)) for r in table.rows}
    assert rows["ours"]["example/arithmetic"] == "0.700 ± 0.141"
    assert rows["ours"]["example/reviews"] == "0.600 ± 0.000"
    assert rows["ours"]["mean"] == "0.650 ± 0.071"
    assert rows["no-budget"]["example/reviews"] == "0.400 ± 0.141"
    assert rows["ours"]["calls / run"] == "120" and rows["no-budget"]["calls / run"] == "140"
    assert rows["ours"]["tokens / run"] == "20" and rows["ours"]["endpoint requests / run"] == "51"
    assert rows["ours"]["runs done"] == "2/2"
    points = {p.variant: p for p in table.points}
    assert points["no-budget"].calls == 140 and points["no-budget"].score == pytest.approx(0.45)
    md = render_sweep_markdown(read_sweep(path))
    assert md.index("## Ablation") < md.index("## Test score against calls") < md.index("## Sub-runs")


def test_report_and_export_of_a_sweep_directory(tmp_path, capsys):
    path = _finished_sweep(tmp_path, {"ours": {0: {"example/arithmetic": 0.8}, 1: {"example/arithmetic": 0.6}}},
                           calls={"ours": 1})
    assert main(["report", str(path)]) == 0
    html = (path / "report.html").read_text()
    assert "Ablation" in html and "data:image/png;base64," in html and "0.700 ± 0.141" in html
    assert main(["export", str(path)]) == 2
    assert "is a sweep" in capsys.readouterr().err
    assert main(["export", str(path / "runs" / "ours--seed0")]) == 0  # a sub-run is a normal run directory


def test_sweep_command_refuses_a_bad_grid_in_one_line_before_starting(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps({"base": BASE, "variants": {"ok": {}, "typo": {"optimizer.candidatez": 3}}}))
    assert main(["sweep", str(path), "--run-dir", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gpo-ray: error: variant 'typo': invalid config: optimizer.candidatez: unknown setting"
    assert not (tmp_path / "sw").exists(), "nothing written"
    assert main(["sweep"]) == 2
    assert "needs a GRID file" in capsys.readouterr().err
