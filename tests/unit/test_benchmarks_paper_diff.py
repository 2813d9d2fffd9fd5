"""The differential check's pure parts (benchmarks/paper_diff.py): the official extraction and choice rule as the
harness re-states them, request matching by step and index, the diff and its report. The full run against the
authors' code is in tests/integration/test_paper_diff.py and needs GPO_OFFICIAL_CODE."""

from __future__ import annotations

import json

from benchmarks import paper_diff as pd


def _record(messages, *, role="task", seed=0, replies=("ok",), **fields):
    return {"body": {"messages": messages, "seed": seed, **fields}, "role": role, "status": 200,
            "replies": list(replies)}


def _user(text):
    return [{"role": "user", "content": text}]


def test_official_choice_is_a_stable_sort_with_the_current_prompt_at_zero_and_never_an_earlier_choice():
    # Ties keep the order given (repeated ones, then list(set(...)) order).
    assert pd.official_choice("cur", [("b", 0.5), ("a", 0.5)], []) == "b"
    assert pd.official_choice("cur", [("a", 0.5), ("b", 0.5)], []) == "a"
    assert pd.official_choice("cur", [("a", 0.5), ("b", 0.4)], ["a"]) == "b"
    # Everything chosen before: the top one all the same.
    assert pd.official_choice("cur", [("a", 0.5)], ["a", "cur"]) == "a"
    # The current prompt at 0.0 wins over worse-than-zero candidates only if not chosen before.
    assert pd.official_choice("cur", [("a", 0.0)], []) == "cur"


def test_optimizer_requests_are_matched_by_seed_to_step_and_index_whatever_their_arrival_order():
    table = pd.seed_table(0, "bbh/navigate", steps=2, candidates=3)
    assert len(table) == 6 and sorted(table.values()) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    by_slot = {slot: seed for seed, slot in table.items()}
    records = [_record(_user(f"m{slot}"), role="optimizer", seed=by_slot[slot]) for slot in reversed(by_slot)]
    records.append(_record(_user("stray"), role="optimizer", seed=12345))
    slots, unmatched = pd.index_optimizer(records, table)
    assert set(slots) == set(by_slot) and [r["body"]["messages"][0]["content"] for r in unmatched] == ["stray"]
    assert slots[(2, 1)]["body"]["messages"][0]["content"] == "m(2, 1)"


def test_classify_tells_probe_optimizer_and_both_task_turns_apart():
    assert pd.classify(_record(_user(pd.PROBE), role="task")) == "probe"
    assert pd.classify(_record(_user("x"), role="optimizer")) == "optimizer"
    assert pd.classify(_record(_user("q\np"))) == "task_first"
    two = _user("q\np") + [{"role": "assistant", "content": "a"}, {"role": "user", "content": "again"}]
    assert pd.classify(_record(two)) == "task_second"
    assert pd.classify(_record(_user("x"), role="feedback")) == "other"


def test_identical_sides_compare_equal():
    cmp = pd.Comparison()
    slot = {(1, 0): _record(_user("meta"), role="optimizer", temperature=1.0, max_tokens=512, n=8)}
    ours = {(1, 0): _record(_user("meta"), role="optimizer", temperature=1.0, max_tokens=512)}  # n: by design
    pd.diff_optimizer_requests(cmp, slot, ours)
    steps = [pd.StepView(1, 48, {"p a": 0.5, "p b": 0.5}, "p a")]
    pd.diff_steps(cmp, steps, steps)
    reqs = [_record(_user("Q1\np a"), max_tokens=256, temperature=0.0)]
    pd.diff_task_requests(cmp, reqs, reqs, {"Q1": "eval"})
    assert cmp.differences == []
    assert all(c["compared"] == c["identical"] > 0 for c in cmp.counts.values())


def test_each_kind_of_difference_is_named():
    cmp = pd.Comparison()
    pd.diff_optimizer_requests(
        cmp,
        {(1, 0): _record(_user("intro\nexemplar 2"), role="optimizer", temperature=1.0, max_tokens=512),
         (1, 1): _record(_user("x"), role="optimizer")},
        {(1, 0): _record(_user("intro\nexemplar 1"), role="optimizer", temperature=0.0, max_tokens=512)},
    )
    causes = pd.diff_steps(
        cmp,
        [pd.StepView(1, 48, {"a": 0.5, "b": 0.5}, "a"), pd.StepView(2, 40, {"c": 0.6}, "c")],
        [pd.StepView(1, 48, {"a": 0.5, "b": 0.5}, "b"), pd.StepView(2, 41, {"c": 0.7, "d": 0.1}, "c")],
    )
    assert causes == {2: "follows from step 1's different choice"}
    first = _user("Q1\np")
    pd.diff_task_requests(
        cmp,
        [_record(first, max_tokens=256), _record(_user("Q2\np"), max_tokens=256)],
        [_record(first, max_tokens=None)],
        {"Q1": "eval", "Q2": "test"},
        {("test", "p"): "logs only"},
    )
    named = {d.what: d for d in cmp.differences}
    assert named["optimizer request text"].detail == "line 2: official 'exemplar 2' | gpo-ray 'exemplar 1'"
    assert named["optimizer request temperature"].detail == "official 1.0, gpo-ray 0.0"
    assert named["optimizer request missing"].where == "step 1, sample 1"
    assert "tie" in named["choice"].cause
    assert named["edit budget"].detail == "official 40, gpo-ray 41"
    assert named["candidate score"].cause == "follows from step 1's different choice"
    assert "scored by gpo-ray only: 'd'" in named["candidate"].detail
    assert named["task requests on one side"].where == "test split, first turn"
    assert named["task requests on one side"].cause == "logs only"
    assert named["task request max_tokens"].detail == "official 256, gpo-ray None on 1 requests sent by both"


def test_the_report_lists_counts_differences_and_what_is_by_design():
    cmp = pd.Comparison()
    cmp.tally("choices", True)
    cmp.tally("choices", False)
    cmp.add("choice", "step 2", "official 'a', gpo-ray 'b'", "a tie")
    report = {"task": "bbh/navigate", "epochs": 1, "align": True, "setup": {"PYTHONHASHSEED": "7"},
              "counts": cmp.counts, "differences": [pd.asdict(d) for d in cmp.differences], "notes": ["n"]}
    md = pd.render_markdown(report)
    assert "(aligned)" in md and "| choices | 2 | 1 | 1 |" in md
    assert "Root differences (not following from an earlier divergent choice): 1 group(s)" in md
    assert "**choice** @ step 2: official 'a', gpo-ray 'b' - *cause: a tie*" in md
    assert "`n`" in md and "`seed`" in md
    json.dumps(report)


def test_gpo_sh_flags_are_read_and_only_task_and_epochs_replaced():
    text = ('SCORER="llama2-chat-7b"\nTASK="all"\nNUM_SEARCH_EPOCHS=3\nDATASET="bbh"\nINCLUDE_QA=false\n'
            'INITIAL_INSTRUCTION="Let\'s think step by step."\n'
            'python src/optimization/main.py \\\n  --scorer_llm_name=$SCORER \\\n  --task_name=$TASK \\\n'
            '  --num_search_epochs=$NUM_SEARCH_EPOCHS \\\n  --initial_instruction="$INITIAL_INSTRUCTION" \\\n'
            '  --include_qa=$INCLUDE_QA \\\n  --dataset=$DATASET \\\n')
    variables, flags = pd.parse_gpo_sh(text)
    assert variables["INITIAL_INSTRUCTION"] == "Let's think step by step."
    assert flags[0] == ("scorer_llm_name", "SCORER") and len(flags) == 6


def test_format_indices_are_found_by_their_inputs():
    fmt = [{"input": "alpha"}, {"input": "beta"}, {"input": "gamma"}]
    assert pd.format_indices_in("x gamma y alpha", fmt) == [0, 2]


def test_set_orders_follow_the_hash_seed_given():
    items = [[f"prompt {i}" for i in range(12)]]
    assert pd.set_orders(items, 5) == pd.set_orders(items, 5)
    assert any(pd.set_orders(items, s) != pd.set_orders(items, 5) for s in range(6, 10))


def test_task_groups_get_the_cause_of_their_calls():
    official = [pd.StepView(1, 50, {"a": 0.5, "b": 0.5}, "a"), pd.StepView(2, 40, {"c": 0.6}, "c")]
    ours = [pd.StepView(1, 50, {"a": 0.5, "b": 0.5}, "b"), pd.StepView(2, 40, {"d": 0.6}, "d")]
    cmp = pd.Comparison()
    step_causes = pd.diff_steps(cmp, official, ours)
    causes = pd.task_group_causes(official, ours, step_causes, "init")
    assert "training batch" in causes["train", "init"] and "step 1's" in causes["train", "init"]
    assert causes["test", "a"] == causes["test", "b"] == causes["train", "b"] == causes["eval", "d"].split(" (")[1][:-1]
    assert causes["test", "b"] == "follows from step 1's different choice"
    assert pd.is_consequence(causes["train", "a"])
