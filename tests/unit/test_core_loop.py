"""The whole GPO loop in-process (the sequential reference optimizer) with deterministic fakes."""

from gpo_ray.config import OptimizerSettings, ScheduleConfig
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import GPOTaskLoop, schedule_for
from gpo_ray.core.reference import InProcessServices, optimize_sequential
from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ScriptedLLM, answer_key_from_examples

PHRASES = ["Think step by step.", "Check the arithmetic.", "Be brief.", "Use the numbers given."]
SKILLS = {"step by step": 0.5, "Check the arithmetic": 0.3}


def example_task():
    (task,) = resolve_tasks(["example/arithmetic"], data_dir=None)
    return task


def optimizer_config() -> FakeLLMConfig:
    """The scripted optimizer's settings: it appends one of PHRASES to the current prompt."""
    return FakeLLMConfig(optimizer_phrases=PHRASES)


def task_model_config() -> FakeLLMConfig:
    """The scripted task model's settings: it knows the example task; SKILLS raise its accuracy."""
    task = example_task()
    key = answer_key_from_examples([*task.train, *task.eval, *task.test])
    return FakeLLMConfig(skill_phrases=SKILLS, base_accuracy=0.2, answer_key=key)


def loop_settings(**kw):
    base = dict(epochs=2, batch_size=4, candidates=3, retrieval="recency", initial_prompt="Answer the question.",
                schedule=ScheduleConfig(initial=12, final=4))
    base.update(kw)
    return OptimizerSettings(**base)


def bag_of_words(texts):
    vocab = sorted({w for t in texts for w in t.lower().split()} | {"x"})
    out = []
    for t in texts:
        v = [float(t.lower().split().count(w)) for w in vocab[:64]]
        n = sum(x * x for x in v) ** 0.5 or 1.0
        out.append([x / n for x in v])
    return out


async def _run(settings, completed=(), on_step=None):
    task = example_task()
    services = InProcessServices(optimizer_llm=ScriptedLLM(optimizer_config()),
                                 task_llm=ScriptedLLM(task_model_config()),
                                 embed=bag_of_words, task_params=TaskModelParams(), on_step=on_step)
    return await GPOTaskLoop(task, settings=settings, services=services, structured=False).run(completed=completed)


async def test_optimization_climbs_and_records_every_step():
    settings = loop_settings()
    recorded = []
    result = await _run(settings, on_step=lambda t, r: recorded.append(r))
    schedule = schedule_for(example_task(), settings)
    assert [s.step for s in result.steps] == list(range(1, schedule.total_steps + 1))
    assert [s.edit_budget for s in result.steps] == schedule.as_list()
    assert [r.step for r in recorded] == list(range(0, schedule.total_steps + 1))
    assert result.best_eval_score > result.initial_eval_score
    assert "step by step" in result.best_prompt or "Check the arithmetic" in result.best_prompt
    assert 0.0 <= result.best_test_score <= 1.0
    for s in result.steps:
        assert s.candidates, "every step scored candidates"
        assert len({c.prompt for c in s.candidates}) == len(s.candidates)


async def test_resume_from_completed_steps_reaches_the_same_result():
    settings = loop_settings()
    recorded = []
    full = await _run(settings, on_step=lambda t, r: recorded.append(r))
    resumed = await _run(settings, completed=recorded[:3])
    assert resumed == full


async def test_strict_mode_rejects_candidates_over_budget():
    settings = loop_settings(edit_enforcement="strict", schedule=ScheduleConfig(kind="fixed", initial=2, final=2),
                         max_rerequests=1)
    result = await _run(settings)
    previous = result.initial_prompt
    assert sum(s.counts.get("rejected:over_budget", 0) for s in result.steps) > 0
    for s in result.steps:
        for c in s.candidates:
            assert c.edit_distance == word_edit_distance(previous, c.prompt) <= 2
        previous = s.prompt


async def test_sequential_reference_runs_several_tasks():
    task = example_task()
    results = await optimize_sequential(
        [task], settings=loop_settings(epochs=1), optimizer_llm=ScriptedLLM(optimizer_config()),
        task_llm=ScriptedLLM(task_model_config()), embed=bag_of_words, task_params=TaskModelParams(),
    )
    assert list(results) == ["example/arithmetic"]
    assert results["example/arithmetic"].steps


async def test_meta_prompt_sentences_can_be_overridden_from_the_config():
    from gpo_ray.llm.protocol import ChatRequest

    seen: list[str] = []

    class Recording(ScriptedLLM):
        async def complete(self, request: ChatRequest):
            seen.append(request.messages[-1].content)
            return await super().complete(request)

    settings = loop_settings(epochs=1, meta_prompt={"task": "You improve prompts for grade-school arithmetic.",
                                                "budget": "Change at most {budget} words."})
    services = InProcessServices(optimizer_llm=Recording(optimizer_config()),
                                 task_llm=ScriptedLLM(task_model_config()), embed=bag_of_words,
                                 task_params=TaskModelParams())
    await GPOTaskLoop(example_task(), settings=settings, services=services, structured=False).run()
    assert seen and all(m.startswith("You improve prompts for grade-school arithmetic.") for m in seen)
    first_budget = schedule_for(example_task(), settings).budget(1)
    assert f"Change at most {first_budget} words." in seen[0]
