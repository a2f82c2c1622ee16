"""A real llama.cpp server (`python -m llama_cpp.server`) on 127.0.0.1, and its models.toml entry."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.http_fake import free_port

SERVED_NAME = "smollm2-served"
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed (extra 'local')")


@contextlib.contextmanager
def running_llama_server(model_path: Path, log_dir: Path, *extra_args: str, n_ctx: int = 4096) -> Iterator[str]:
    """The server serving a GGUF on 127.0.0.1; yields its base URL (with /v1). `n_ctx` bounds a
    generation that ignores max_tokens (llama.cpp's function-calling path): prompt + reply."""
    port = free_port()
    log = log_dir / "server.log"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path),
                "--model_alias",
                SERVED_NAME,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(n_ctx),
                "--n_threads",
                "2",
                *extra_args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:  # no /health on this server: /v1/models answers once the model is loaded
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not ready in 120 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def served_entry(base_url: str, name: str = "served", **fields: str) -> str:
    """A models.toml entry for a llama.cpp server (greedy like the embedded model)."""
    extra = "".join(f'{key} = "{value}"\n' for key, value in fields.items())
    return (
        f'[{name}]\nprovider = "openai-compatible"\n'
        f'model = "{SERVED_NAME}"\nbase_url = "{base_url}"\n'
        'temperature = 0.0\nconstraint_style = "json_object_schema"\n'
        f"max_concurrency = 1\nparams = {{ repeat_penalty = 1.0 }}\n{extra}"
    )
