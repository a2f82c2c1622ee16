"""One tiny real request per frontier API, when its key is set (skipped otherwise).

Run: OPENAI_API_KEY=... pytest tests/test_live.py -m live
"""

from __future__ import annotations

import os

import pytest

from pytest_distill.core.cost import api_cost
from pytest_distill.models.base import OutputConstraint, Request
from pytest_distill.models.registry import Registry
from pytest_distill.runtime.engine import Engine

# the cheapest model of each provider, and the variables its SDK reads
CASES = [
    ("gpt-5-nano", ("OPENAI_API_KEY",)),
    ("claude-haiku-4.5", ("ANTHROPIC_API_KEY",)),
    ("gemini-2.5-flash-lite", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
    ("grok-4.1-fast", ("XAI_API_KEY",)),
]

REQUEST = Request(
    messages=({"role": "user", "content": "Which word answers a ping? Answer with that one word."},),
    system="You answer with exactly one word from the allowed list.",
    constraint=OutputConstraint(kind="choice", choices=("ping", "pong")),
    max_tokens=64,
)


@pytest.mark.live
@pytest.mark.parametrize(("model", "variables"), CASES, ids=[c[0] for c in CASES])
def test_one_tiny_request(model, variables):
    if not any(os.environ.get(v) for v in variables):
        pytest.skip(f"no {' or '.join(variables)} set")
    entry = Registry().get(model)
    entry.max_retries = 2
    entry.timeout_s = 60
    engine = Engine()
    try:
        completion = engine.complete(entry, REQUEST)
    finally:
        engine.close()
    assert completion.text == "pong"
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert completion.latency_s > 0 and completion.constrained
    assert api_cost(entry, completion.usage) > 0
