"""The Python metric that stands in for the LLM judge in benchmarks/judge_share.py: the same verdicts as the fake
endpoint's scripted judge (gpo_ray/testing/scripted.py: judge_answer), so a run scored by it takes the same path as
the judged run, without the judge's calls.

Named by its file in the run's config, so Ray ships it to the evaluators (runtime_env py_modules): standard library
only, importable on a worker that has no `benchmarks` package on its path.
"""

from __future__ import annotations

import re


def holds_answer(example: dict, reply: str) -> tuple[float, str | None]:
    """1 when the reply holds a reference answer as a word of its own (the scripted judge's top score, normalised);
    else 0, with the scripted judge's reason."""
    lowered = reply.lower()
    wanted = [a.strip().lower() for a in example["answers"] if a.strip()]
    if any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", lowered) for a in wanted):
        return 1.0, "The reply gives the reference answer."
    return 0.0, "The reply does not give the reference answer."
