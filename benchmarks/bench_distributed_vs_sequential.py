"""Wall-clock of the distributed optimizer against the sequential reference, measured in one run.

Both optimize the same tasks with the same seed against the same fake endpoint, which behaves like a
served model: a fixed latency per request and a fixed number of concurrent slots. The report is a
ratio taken in one process on one machine, so machine noise affects both sides alike.

    .venv/bin/python benchmarks/bench_distributed_vs_sequential.py [--tasks 8] [--latency 0.3] [--slots 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402

from gpo_ray.api import optimize  # noqa: E402
from gpo_ray.llm.embedding import MiniLMEmbedder  # noqa: E402
from tests.integration.test_e2e_optimize import sequential_results, write_sum_task  # noqa: E402
from tests.threaded_fake import fake_llm_thread  # noqa: E402
from gpo_ray.config import LLMRoleConfig, RunConfig, TaskSource  # noqa: E402
from gpo_ray.llm.fake_server import FakeLLMConfig, answer_key_from_examples  # noqa: E402
from gpo_ray.tasks.registry import resolve_tasks  # noqa: E402


def build_config(root: Path, base_url: str, n_tasks: int, *, evaluators: int, refiners: int, epochs: int = 3) -> RunConfig:
    sources = []
    for i in range(n_tasks):
        folder = root / "data" / f"t{i}"
        if not folder.exists():
            write_sum_task(folder, seed=100 + i, n=16)
        sources.append(TaskSource(name=f"sums/t{i}", format="jsonl", path=folder, metric="numeric"))
    role = LLMRoleConfig(base_url=base_url, model="fake-llm", max_tokens=64, max_in_flight=64)
    return RunConfig(
        tasks=["sums/*"], task_sources=sources, task_model=role,
        optimizer_model=role.model_copy(update={"temperature": 1.0}),
        optimizer={"epochs": epochs, "batch_size": 8, "candidates": 4, "seed": 3, "initial_prompt": "Answer."},
        cluster={"num_refiners": refiners, "num_evaluators": evaluators, "evaluator_max_in_flight": 16},
        run_dir=root / f"run-{time.monotonic_ns()}", cache=False,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--latency", type=float, default=0.3)
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--evaluators", type=int, default=4)
    p.add_argument("--refiners", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    MiniLMEmbedder().embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        probe = build_config(root, "http://x/v1", args.tasks, evaluators=1, refiners=1)
        tasks = resolve_tasks(probe.tasks, data_dir=None, sources=probe.task_sources)
        key = answer_key_from_examples([e for t in tasks for e in (*t.train, *t.eval, *t.test)])
        fake_cfg = FakeLLMConfig(answer_key=key, latency_s=args.latency, concurrency=args.slots)
        with fake_llm_thread(fake_cfg) as fake:
            config = build_config(root, fake.base_url, args.tasks, evaluators=args.evaluators, refiners=args.refiners,
                                  epochs=args.epochs)
            t0 = time.perf_counter()
            seq = sequential_results(config, fake.base_url)
            t_seq = time.perf_counter() - t0
            seq_requests = fake.stats()["requests"]
            t0 = time.perf_counter()
            dist = optimize(config)
            t_dist = time.perf_counter() - t0
            dist_requests = fake.stats()["requests"] - seq_requests
            peak = fake.stats()["peak_in_service"]
    ray.shutdown()
    report = {
        "tasks": args.tasks, "latency_s": args.latency, "endpoint_slots": args.slots,
        "evaluators": args.evaluators, "refiners": args.refiners, "epochs": args.epochs,
        "sequential_s": round(t_seq, 2), "distributed_s": round(t_dist, 2),
        "speedup": round(t_seq / t_dist, 2),
        "requests": {"sequential": seq_requests, "distributed": dist_requests},
        "endpoint_peak_concurrency": peak,
        "same_result": dist.tasks == seq,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
