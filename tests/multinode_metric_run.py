"""Driver for the multi-node metric test: a real Ray cluster of two nodes on this machine (ray.cluster_utils), a head
with `gpo_head` and one worker with `gpo_evaluator`/`gpo_refiner`, and `gpo-ray optimize --address` on a CSV task
scored by a Python metric file that lives in a fresh folder on no Ray process's path. The metric writes down, for
every call, where it ran (node id, pid, its own `__file__`). Run as a subprocess (one Ray cluster per process);
prints one JSON report.

    python -m tests.multinode_metric_run OUT_DIR
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from pathlib import Path

from ray.cluster_utils import Cluster

from gpo_ray.cli import main as gpo_ray
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples
from tests.by_hand import replies_by_hand, task_of

MODULE = "node_scored_metric"  # importable nowhere: not installed, not in the repo, its folder on no path

METRIC = '''\
import json
import os
import sys

import ray

CALLS = {calls!r}
USER_DIR = {user_dir!r}


def score(example, reply):
    words = reply.split()
    given = words[-1].rstrip(".") if words else ""
    value, feedback = (1.0, None) if given == example["answer"] else (0.25, f"the sum is {{example['answer']}}")
    context = ray.get_runtime_context()
    record = {{"node": context.get_node_id(), "actor": context.get_actor_id(), "pid": os.getpid(), "file": __file__,
              "user_dir_on_path": USER_DIR in sys.path, "example": example["id"], "answer": example["answer"],
              "reply": reply, "score": value}}
    with open(CALLS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\\n")
    return value, feedback
'''


def by_hand(answer: str, reply: str) -> float:
    """The metric, written again: the reply's last word is the sum (1.0), else 0.25."""
    words = reply.split()
    return 1.0 if words and words[-1].rstrip(".") == answer else 0.25


def write_user_folder(user: Path) -> None:
    user.mkdir(parents=True)
    rng = random.Random(5)
    with (user / "sums.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "sum"])
        for i in range(24):
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            writer.writerow([f"S-{i}", f"What is {a} + {b}?", str(a + b)])
    (user / f"{MODULE}.py").write_text(METRIC.format(calls=str(user / "calls.jsonl"), user_dir=str(user)))


def write_config(user: Path, base_url: str, run_dir: Path) -> Path:
    path = user / "run.yaml"
    path.write_text(
        "tasks: [sums]\n"
        "task_sources:\n"
        "  - {name: sums, format: csv, path: sums.csv, input_field: question, answer_field: sum, id_field: id,\n"
        f"     train_size: 8, eval_size: 8, split_seed: 1, metric: {{kind: python, function: '{MODULE}.py:score'}}}}\n"
        f"task_model: {{base_url: '{base_url}', model: fake-llm, max_tokens: 32, timeout_s: 10}}\n"
        f"optimizer_model: {{base_url: '{base_url}', model: fake-llm, timeout_s: 10}}\n"
        "optimizer: {epochs: 1, batch_size: 4, candidates: 2, initial_prompt: Add the numbers., seed: 3,\n"
        "            direction: feedback}\n"
        "cluster: {num_refiners: 1, num_evaluators: 2}\n"
        f"run_dir: {run_dir}\n",
        encoding="utf-8",
    )
    return path


def eval_score_by_hand(config_path: Path, base_url: str, prompt: str) -> float:
    """The prompt's eval score: the same requests sent again, the replies scored by `by_hand`."""
    task = task_of(config_path)
    replies = replies_by_hand(config_path, base_url, prompt, list(task.eval))
    scores = [by_hand(ex.answers[0], reply) for ex, reply in zip(task.eval, replies, strict=True)]
    return sum(scores) / len(scores)


def main() -> None:
    out = Path(sys.argv[1])
    user = out / "user"
    write_user_folder(user)
    importable = importlib.util.find_spec(MODULE) is not None or str(user) in sys.path
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"gpo_head": 1}})
    worker = cluster.add_node(num_cpus=1, resources={"gpo_evaluator": 100, "gpo_refiner": 100})
    cluster.wait_for_nodes()
    report: dict = {"head": cluster.head_node.node_id, "worker": worker.node_id, "driver_can_import": importable,
                    "metric_file": str(user / f"{MODULE}.py")}
    rows = list(csv.DictReader((user / "sums.csv").open(encoding="utf-8")))
    key = answer_key_from_examples((r["question"], r["sum"]) for r in rows)
    fake_cfg = FakeLLMConfig(base_accuracy=0.5, answer_key=key, skill_phrases={"step by step": 0.3},
                             optimizer_phrases=["Think step by step.", "Work carefully."])
    with ThreadedFake(fake_cfg) as fake:
        config_path = write_config(user, fake.base_url, out / "run")
        report["exit_code"] = gpo_ray(["optimize", str(config_path), "--address", cluster.address, "--quiet"])
        results = json.loads((out / "run" / "results.json").read_text())
        entry = results["tasks"]["sums"]
        report["status"] = results["status"]
        report["scores"] = {k: entry[k] for k in ("initial_eval_score", "best_eval_score", "best_test_score")}
        report["by_hand"] = {"initial_eval_score": eval_score_by_hand(config_path, fake.base_url,
                                                                      entry["initial_prompt"]),
                             "best_eval_score": eval_score_by_hand(config_path, fake.base_url, entry["best_prompt"])}
    report["calls"] = [json.loads(line) for line in (user / "calls.jsonl").read_text().splitlines()]
    report["calls_by_hand"] = [by_hand(c["answer"], c["reply"]) for c in report["calls"]]
    print("REPORT " + json.dumps(report))
    cluster.shutdown()


if __name__ == "__main__":
    main()
