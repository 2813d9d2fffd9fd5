#!/usr/bin/env bash
# Regenerates docs/report-example/ (the example report in docs/results-and-reports.md) from a real run: GPO on two BIG-Bench-Hard
# tasks against the deterministic fake endpoint (scripted optimizer and task model, 2% rate-limit faults so the
# usage table shows retries), then `gpo-ray report` as HTML (screenshot by headless Chromium) and markdown.
#
# usage: scripts/make_report_example.sh [DATA_DIR]   (default: ../shared/datasets/gpo beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${1:-$(cd .. && pwd)/shared/datasets/gpo}"
PY="$PWD/.venv/bin/python"
GPO="$PWD/.venv/bin/gpo-ray"
OUT="$PWD/docs/report-example"
WORK="$(mktemp -d)"
PORT="${PORT:-8791}"
TASKS=(bbh/navigate bbh/snarks)

# The fake endpoint knows the answers, rewards prompts with "step by step" / "carefully", and fails 2% of requests.
"$PY" - "$DATA_DIR" "$WORK/fake.yaml" "${TASKS[@]}" <<'PYEOF'
import sys
from pathlib import Path
import yaml
from gpo_ray.testing import answer_key_from_examples
from gpo_ray.tasks.registry import resolve_tasks
data_dir, out, *names = sys.argv[1:]
tasks = resolve_tasks(names, data_dir=Path(data_dir))
key = answer_key_from_examples(ex for t in tasks for ex in (*t.train, *t.eval, *t.test))
Path(out).write_text(yaml.safe_dump({
    "answer_key": key, "base_accuracy": 0.35, "skill_phrases": {"step by step": 0.3, "carefully": 0.15},
    "optimizer_phrases": ["Think step by step.", "Read the question carefully.", "Be concise.",
                          "Check each statement.", "Show your work."],
    "error_rate_429": 0.02, "retry_after_s": 0.05}))
PYEOF

"$GPO" fake-llm --port "$PORT" --config "$WORK/fake.yaml" &
FAKE_PID=$!
trap 'kill "$FAKE_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" \
    2>/dev/null && break
  sleep 0.2
done

task_args=()
for t in "${TASKS[@]}"; do task_args+=(--task "$t"); done
mkdir -p "$OUT"
# From inside the work folder, so the report names the run by the short relative path it was made with.
(
  cd "$WORK"
  "$GPO" optimize "${task_args[@]}" --data-dir "$DATA_DIR" --base-url "http://127.0.0.1:$PORT/v1" --model fake-llm \
    --epochs 1 --candidates 6 --seed 3 --run-dir runs/example --quiet
  "$GPO" report runs/example --output report.html
  "$GPO" report runs/example --format md --output "$OUT/report.md"
)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$WORK/chromium" \
  --window-size=1200,2000 --screenshot="$OUT/report.png" "file://$WORK/report.html" 2>/dev/null
echo "wrote $OUT/report.png and $OUT/report.md"
