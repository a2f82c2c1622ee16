"""A fake vLLM install: `vllm serve` played by benchmarks/fake_server.py, for tests that start,
stop and bench managed vllm entries in seconds and without a GPU."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from helpers.paths import ROOT

FAKE_SERVER = ROOT / "benchmarks" / "fake_server.py"


def fake_vllm_python(folder: Path) -> Path:
    """folder/fakevenv/bin/python: a shell script standing in for the vLLM venv's python. It
    answers the plugin's "is vllm installed" probe and runs the fake server with the launcher's
    command line."""
    script = folder / "fakevenv" / "bin" / "python"
    script.parent.mkdir(parents=True)
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-c" ]; then exit 0; fi\n'  # the "is vllm installed" probe
        f'exec "{sys.executable}" "{FAKE_SERVER}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def model_folder(folder: Path) -> Path:
    """folder/model with a config.json: what a vllm entry's `model` may name."""
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model
