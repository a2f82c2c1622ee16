"""Replicas (`base_urls`): the least busy replica answers; a dead or failing one is taken out
and its requests retried elsewhere: never a miss, never an error while another replica is up."""

from __future__ import annotations

import threading

import pytest

from pytest_distill.models.base import ProviderError
from pytest_distill.runtime.replicas import is_replica_failure

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, GoneAfterPreflight, numbered_rows
from helpers.suites import write_suite

ROWS = numbered_rows(12)


def _models_toml(urls, **extra):
    lines = [
        '["replicated"]',
        'provider = "openai-compatible"',
        'model = "correct"',
        "base_urls = [" + ", ".join(f'"{u}"' for u in urls) + "]",
        "temperature = 0.0",
        "max_retries = 0",
        'constraint_style = "none"',
        "max_concurrency = 2",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_what_counts_as_a_replica_failure():
    assert is_replica_failure(ProviderError("connection refused", retryable=True))
    assert is_replica_failure(ProviderError("HTTP 503", retryable=True, status=503))
    assert is_replica_failure(ProviderError("HTTP 500", status=500))
    assert not is_replica_failure(ProviderError("HTTP 400: bad request", status=400))
    assert not is_replica_failure(ProviderError("HTTP 429", retryable=True, status=429))


@pytest.mark.parametrize("xdist_args", [SERIAL, XDIST])
def test_a_replica_killed_mid_run_costs_no_item(pytester, xdist_args):
    doomed = FakeChatServer(ROWS).start()
    answered = []

    def survivor_answers(body):
        answered.append(1)
        if len(answered) == 3:  # the other replica dies while the run goes on
            threading.Thread(target=doomed.stop).start()
        return survivor._by_spec(body)

    survivor = FakeChatServer(ROWS, responder=survivor_answers)
    with survivor:
        try:
            write_suite(pytester.path / "suites" / "topics", rows=ROWS)
            pytester.makefile(".toml", models=_models_toml([doomed.url, survivor.url]))
            result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=replicated", *xdist_args)
        finally:
            doomed.stop()
    result.assert_outcomes(passed=len(ROWS), errors=0, failed=0)
    assert len(survivor.bodies) + len(doomed.bodies) >= len(ROWS) and survivor.bodies


def test_a_replica_answering_5xx_is_taken_out_and_its_requests_answered_elsewhere(pytester):
    failing = FakeChatServer(ROWS, responder=lambda body: (503, {"error": {"message": "overloaded"}}))
    healthy = FakeChatServer(ROWS)
    with failing, healthy:
        write_suite(pytester.path / "suites" / "topics", rows=ROWS)
        pytester.makefile(".toml", models=_models_toml([failing.url, healthy.url]))
        result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=replicated")
    result.assert_outcomes(passed=len(ROWS), errors=0, failed=0)
    assert len(healthy.bodies) == len(ROWS)
    # taken out for a cool-down after its first failures: not asked for every item
    assert 1 <= len(failing.bodies) < len(ROWS)


def test_with_every_replica_down_the_item_is_an_error_not_a_miss(pytester):
    """One replica answers the preflight and goes away, the other is down from the start."""
    first, second = GoneAfterPreflight(ROWS[:2]).start(), FakeChatServer(ROWS[:2]).start()
    urls = [first.url, second.url]
    second.stop()
    try:
        write_suite(pytester.path / "suites" / "topics", rows=ROWS[:2])
        pytester.makefile(".toml", models=_models_toml(urls, timeout_s=5))
        result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=replicated")
    finally:
        first.stop()
    result.assert_outcomes(errors=2, passed=0, failed=0)


def test_no_replica_answering_at_the_start_stops_the_run_in_one_line(pytester):
    first, second = FakeChatServer(ROWS[:2]).start(), FakeChatServer(ROWS[:2]).start()
    urls = [first.url, second.url]
    first.stop()
    second.stop()
    write_suite(pytester.path / "suites" / "topics", rows=ROWS[:2])
    pytester.makefile(".toml", models=_models_toml(urls, timeout_s=5))
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=replicated")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"model 'replicated': nothing answers at {urls[0]} (nor at any of its 2 base_urls)" in result.stderr.str()
