#!/usr/bin/env bash
# The README's test command (after scripts/setup.sh): every test that needs no second node, in two phases.
#  1. The tests of the real embedded model (`-m model`: llama.cpp on this machine's CPU), one after another. They
#     are CPU-bound; beside parallel workers the quickstart took over 900 s instead of about 300 on 2 cores.
#  2. The rest on 4 parallel workers (pytest-xdist; tests/parallel_order.py deals the files out, slow ones first,
#     each file on one worker). Most of it waits on fake endpoints, Ray and child processes, which overlap.
# The multi-node tests (`-m multinode`) are left out; .ci/run runs them after this. Extra arguments go to both
# phases (e.g. `-x`).
set -euo pipefail
cd "$(dirname "$0")/.."
phase() {  # pytest's exit status 5 is "no test selected" (arguments that pick no test of this phase): not a failure
  .venv/bin/python -m pytest -q "$@" || { status=$?; [[ $status -eq 5 ]] || exit "$status"; }
}
phase -m "model and not multinode" "$@"
phase -n 4 --dist worksteal -m "not model and not multinode" "$@"
