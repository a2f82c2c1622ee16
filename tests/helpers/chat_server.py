"""A fake OpenAI-compatible chat server for fast, exact plugin tests.

`FakeChatServer` answers POST /v1/chat/completions on 127.0.0.1 from a table of
(question, answer) rows. The request's `model` field says how it behaves, so one
server serves every "model" a models.toml defines:

    correct            always the expected answer
    wrong              always a wrong answer
    even / odd         correct on even (odd) rows, wrong otherwise (rows are 1-based)
    wrong:1,3          wrong on rows 1 and 3, correct otherwise
    error / error:2    HTTP 500 (on every row / on row 2)
    correct+error:2    specs combine with "+"; the last one matching a row wins

Rows are numbered in the order given, as the suite loader numbers them. A question
the server doesn't know is answered "unknown". Give entries `max_retries = 0` so an
HTTP 500 becomes an error at once (the engine would otherwise back off and retry).

    with FakeChatServer(rows) as server:
        pytester.makefile(".toml", models=server.models_toml(good="correct", half="even"))

A custom `responder(body) -> str | dict | (status, dict)` replaces the spec rules:
a str is the reply text, a dict the whole `message`, a tuple a raw HTTP answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from helpers.http_fake import FakeHTTPServer, HTTPRequest, Reply
from helpers.suites import TOPIC_ROWS, write_suite

Responder = Callable[[dict[str, Any]], Any]

# Plugin behaviour is tested serially and under xdist with the same cases.
XDIST = pytest.param(["-n", "2"], id="xdist")
SERIAL = pytest.param([], id="serial")


def _question_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def _toml(value: Any) -> str:
    """A TOML value: JSON's scalars and arrays are TOML too; tables become inline tables."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def _rows_of(spec: str) -> set[int] | None:
    """'wrong:1,3' -> {1, 3}; 'wrong' -> None (every row)."""
    _, _, listed = spec.partition(":")
    return {int(x) for x in listed.split(",") if x.strip()} if listed else None


class FakeChatServer(FakeHTTPServer):
    thread_name = "fake-chat"

    def __init__(self, rows: Iterable[Any] = (), responder: Responder | None = None) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = [
            r if isinstance(r, dict) else {"question": r[0], "answer": r[1]} for r in rows
        ]
        self.answers: dict[str, tuple[int, str]] = {}
        for index, row in enumerate(self.rows, start=1):
            question, answer = row["question"], row["answer"]
            # The loader may strip surrounding whitespace; match on the stripped text.
            self.answers[str(question).strip()] = (index, str(answer))
        self.responder = responder
        self.listed_models: list[str] = []  # the ids GET /v1/models lists

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (with /v1)."""
        return f"{self.origin}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests received, in order."""
        with self._lock:
            return [r["json"] for r in self.requests if r["method"] == "POST"]

    def models_toml(self, **specs: str | dict[str, Any]) -> str:
        """models.toml entries NAME = SPEC, all served by this server. A dict spec gives more
        fields: {"spec": "even", "gpu_hourly_usd": 0.01}."""
        out = []
        for name, spec in specs.items():
            given = dict(spec) if isinstance(spec, dict) else {"spec": spec}
            fields = {
                "provider": "openai-compatible",
                "model": given.pop("spec"),
                "base_url": self.url,
                "temperature": 0.0,
                "max_retries": 0,
                "constraint_style": "none",
                **given,
            }
            out.append(f'["{name}"]\n' + "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items()) + "\n")
        return "".join(out)

    # --- answering -----------------------------------------------------------
    def answer(self, request: HTTPRequest) -> Reply:
        if request["method"] == "GET":  # /v1/models, for readiness checks
            listed = [{"id": name, "object": "model"} for name in self.listed_models]
            return {"status": 200, "body": {"object": "list", "data": listed}}
        status, payload = self.handle(request["path"], request["json"] or {})
        return {"status": status, "body": payload}

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {path}"}}
        reply = self.responder(body) if self.responder else self._by_spec(body)
        if isinstance(reply, tuple):
            return reply
        message = reply if isinstance(reply, dict) else {"role": "assistant", "content": reply}
        # Deterministic token counts: about 4 characters a token.
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
        completion = len(str(message.get("content") or "")) // 4 + 1
        return 200, {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def _by_spec(self, body: dict[str, Any]) -> Any:
        row, expected = self.answers.get(_question_text(body).strip(), (0, None))
        if expected is None:
            return "unknown"
        outcome = "correct"
        for part in str(body.get("model", "correct")).split("+"):
            kind = part.partition(":")[0].strip()
            rows = _rows_of(part)
            if kind == "even":
                outcome = "correct" if row % 2 == 0 else "wrong"
            elif kind == "odd":
                outcome = "correct" if row % 2 == 1 else "wrong"
            elif kind in ("correct", "wrong", "error") and (rows is None or row in rows):
                outcome = kind
        if outcome == "error":
            return 500, {"error": {"message": f"fake server error on row {row}"}}
        text = expected if outcome == "correct" else f"not-{expected}"
        if body.get("response_format"):  # a constrained request: the label as JSON
            text = json.dumps({"label": text})
        return text


class GoneAfterPreflight(FakeChatServer):
    """Answers the run's GET /v1/models (the preflight), then goes away: a server that was
    there when the run opened and is gone at the items."""

    def answer(self, request: HTTPRequest) -> Reply:
        reply = super().answer(request)
        if request["method"] == "GET":
            threading.Thread(target=self.stop).start()
        return reply


def numbered_rows(n: int) -> list[dict[str, str]]:
    """n distinct classification rows over the TOPICS labels of helpers/suites.py."""
    return [
        {
            "question": f"{TOPIC_ROWS[i % len(TOPIC_ROWS)][0]} (item {i + 1})",
            "answer": TOPIC_ROWS[i % len(TOPIC_ROWS)][1],
        }
        for i in range(n)
    ]


def distill_project(
    pytester: Any,
    server: FakeChatServer,
    models: dict[str, Any],
    suites: dict[str, str | None] | None = None,
    extra_models: str = "",
) -> None:
    """In a pytester dir: suites/<name> for each suite (its distill.toml text, or None for
    none), all with the server's rows, and a models.toml of NAME = SPEC entries."""
    for name, settings in (suites or {"topics": None}).items():
        write_suite(pytester.path / "suites" / name, rows=server.rows, settings=settings)
    pytester.makefile(".toml", models=server.models_toml(**models) + extra_models)
