"""The test double of an LLM endpoint: deterministic scripted models, and the fake server that serves them.

Tests and benchmarks use it instead of a real model; nothing in a real run imports it.

    from gpo_ray.testing import FakeLLMConfig, ScriptedLLM, ThreadedFake
    llm = ScriptedLLM(FakeLLMConfig(answer_key=key))   # an LLMClient, in-process, no HTTP
    with ThreadedFake(FakeLLMConfig()) as fake:         # the same models over HTTP, with faults and /stats
        run(base_url=fake.base_url)

- `config`: how the fake behaves (`FakeLLMConfig`, loadable from YAML for `gpo-ray fake-llm --config`).
- `scripted`: the scripted optimizer, task model, judge and embedder (`ScriptedLLM`), pure functions of the request.
- `routing`: which scripted model answers a request - its X-GPO-Purpose / X-GPO-Role metadata, which gpo-ray sends;
  the prose only for a request without them (made by hand).
- `arithmetic`: the small evaluator the task model answers arithmetic questions with.
- `faults`: which injected fault hits a request, and the error it answers with.
- `fault_injection`: the server's faults at run time (`FaultInjector`): timed rates, outages, the fault responses.
- `stats`: the counters at GET /stats.
- `recording`: what the server keeps of the requests it serves (`Recorder`): counters, timeline, request log.
- `hashing`: the hashes that make replies, faults and delays the same in every process and run.
- `server`: the aiohttp server around `ScriptedLLM` (`FakeLLMServer`, `gpo-ray fake-llm`): routes, slots, lifecycle.
- `host`: the server in this event loop, in a background thread, or in a child process.
"""

from gpo_ray.testing.config import FakeLLMConfig, answer_key_from_examples
from gpo_ray.testing.host import ProcessFake, ThreadedFake, running_fake_llm
from gpo_ray.testing.scripted import ScriptedLLM
from gpo_ray.testing.server import FakeLLMServer, run_fake_llm

__all__ = [
    "FakeLLMConfig",
    "FakeLLMServer",
    "ProcessFake",
    "ScriptedLLM",
    "ThreadedFake",
    "answer_key_from_examples",
    "run_fake_llm",
    "running_fake_llm",
]
