"""API keys never reach any output, and a missing key stops the run at start in one line."""

from __future__ import annotations

import pytest

from helpers.recorded import RecordedServer, make_project, reply, with_text

# model -> (recorded api, key variable, base_url suffix)
MODELS = {
    "claude-haiku-4.5": ("anthropic", "ANTHROPIC_API_KEY", ""),
    "gpt-5-nano": ("openai", "OPENAI_API_KEY", "/v1"),
    "grok-4.1-fast": ("xai", "XAI_API_KEY", "/v1"),
    "gemini-2.5-flash": ("gemini", "GEMINI_API_KEY", ""),
    "local-server": ("openai", "LOCAL_SERVER_KEY", "/v1"),  # openai-compatible, as vllm's entries are
}
# Entries that are not built in.
NEW_ENTRIES = {"local-server": 'provider = "openai-compatible"\nmodel = "m"\napi_key_env = "LOCAL_SERVER_KEY"\n'}
ALL_KEY_VARIABLES = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "XAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"]


def echoing_error(api: str, key: str, retryable: bool) -> dict:
    """A recorded error reply whose message quotes the key back, as some APIs do."""
    if api == "xai":
        answer = reply("xai", "rate_limit")
        answer["body"]["error"] = f"Incorrect API key provided: {key}"
        answer["status"] = 500 if retryable else 400
        return answer
    answer = reply(api, "server_error" if retryable else "invalid_key")
    error = answer["body"]["error"]
    error["message"] = f"{error['message']} (key: {key})"
    return answer


def echoing_answer(api: str, key: str) -> dict:
    """A recorded success whose answer quotes the key back (the label would be a miss)."""
    return with_text(api, reply(api, "success"), f"card_arrival, key {key}")


@pytest.mark.parametrize("echo", ["error", "answer"])
@pytest.mark.parametrize("model", list(MODELS))
def test_keys_never_appear_in_any_output(pytester, monkeypatch, model, echo):
    api, variable, suffix = MODELS[model]
    key = f"sk-FAKE-{api}-7f3c9a1b2d4e6f80"
    for name in ALL_KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, key)
    with RecordedServer() as server:
        calls = {"n": 0}

        def respond(request):
            calls["n"] += 1  # first example: a 5xx retried once; the others: a 4xx at once
            if echo == "answer":
                return echoing_answer(api, key)
            return echoing_error(api, key, retryable=calls["n"] <= 2)

        server.responder = respond
        make_project(
            pytester, f'["{model}"]\n{NEW_ENTRIES.get(model, "")}base_url = "{server.url}{suffix}"\nmax_retries = 1\n'
        )
        args = [
            "suites/banking77",
            f"--model={model}",
            "--limit=3",
            "--repeat=1",  # frontier entries repeat 3 times by default
            "-p",
            "no:randomly",
            "-v",
            "-rA",
            "--junitxml=junit.xml",
            "--log-level=DEBUG",
            "--log-file=run.log",
            "--log-file-level=DEBUG",
            "--distill-cache=.cache",
            "--distill-report=report",
        ]
        result = pytester.runpytest(*args)
        assert any(
            request["headers"].get(h, "").endswith(key)
            for request in server.requests
            for h in ("authorization", "x-api-key", "x-goog-api-key")
        ), "the key was sent"

    if echo == "answer":
        result.assert_outcomes(failed=3)  # misses: the answer is not a label
    else:
        result.assert_outcomes(errors=3)
    output = result.stdout.str() + result.stderr.str()
    assert "[REDACTED]" in output  # the echo happened, and was caught
    assert key not in output
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.name == "junit.xml" for p in files) and any(p.name == "run.log" for p in files)
    leaked = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert leaked == []
    # and not a shortened form either
    assert key[:12] not in output


@pytest.mark.parametrize(
    ("model", "variables"),
    [
        ("claude-haiku-4.5", "ANTHROPIC_API_KEY"),
        ("gpt-5-nano", "OPENAI_API_KEY"),
        ("grok-4", "XAI_API_KEY"),
        ("gemini-2.5-flash-lite", "GOOGLE_API_KEY or GEMINI_API_KEY"),
    ],
)
def test_a_missing_key_stops_the_run_in_one_line(pytester, monkeypatch, model, variables):
    for name in ALL_KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    make_project(pytester)
    result = pytester.runpytest("suites/banking77", "--model=smollm2-135m", f"--model={model}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [
        (f"ERROR: pytest-distill: model '{model}' needs an API key: set the environment variable {variables}")
    ]
    assert "Traceback" not in result.stdout.str()


def test_secret_serve_settings_are_masked_in_reports_and_logs():
    from pytest_distill.core import redact
    from pytest_distill.models.registry import ModelEntry

    entry = ModelEntry(
        name="m",
        provider="vllm",
        model="org/gated",
        serve_env={"HF_TOKEN": "hf_secret_123"},
        serve_args=["--api-key", "sk-local-1", "--dtype=float32", "--hf-token=hf_secret_123"],
    )
    shown = repr(entry.public_dict())
    assert "hf_secret_123" not in shown and "sk-local-1" not in shown
    assert entry.public_dict()["serve_env"] == {"HF_TOKEN": "[REDACTED]"}
    assert redact.args(entry.serve_args) == ["--api-key", "[REDACTED]", "--dtype=float32", "--hf-token=[REDACTED]"]


def test_the_registry_registers_every_secret_it_learns(tmp_path, monkeypatch):
    """Before any request: keys of named variables and built-in ones, URL credentials (and
    their Basic form), secret serve_args and serve_env values, secret-named params."""
    import base64

    from pytest_distill.core import redact
    from pytest_distill.models.registry import Registry

    redact.clear()
    monkeypatch.setenv("MY_PROXY_KEY", "proxy-key-123456")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-builtin-987654")
    models = tmp_path / "models.toml"
    models.write_text(
        '[proxy]\nprovider = "openai"\nmodel = "m"\napi_key_env = "MY_PROXY_KEY"\n'
        'base_url = "https://me:url-pass-777@proxy.example/v1"\n'
        'params = { api_token = "param-token-555" }\n\n'
        '[served]\nprovider = "vllm"\nmodel = "org/m"\n'
        'serve_args = ["--api-key", "serve-key-333", "--hf-token=hf-token-222"]\n'
        'serve_env = { HF_TOKEN = "hf-env-token-111" }\n'
    )
    try:
        Registry(models)
        secrets = [
            "proxy-key-123456",
            "sk-ant-builtin-987654",
            "url-pass-777",
            "param-token-555",
            "serve-key-333",
            "hf-token-222",
            "hf-env-token-111",
            base64.b64encode(b"me:url-pass-777").decode(),
        ]
        shown = redact.text(" ".join(secrets))
        assert shown == " ".join(["[REDACTED]"] * len(secrets))
    finally:
        redact.clear()
