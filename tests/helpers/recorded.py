"""Recorded API replies, served to the real SDK clients by a real HTTP server on 127.0.0.1.

Fixture files (tests/fixtures/<api>/<name>.json) hold one reply each, in the format of
helpers.http_fake: {"status": 200, "headers": {...}, "body": <the API's JSON> | "text":
"<raw body>", "delay_s": 0}.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.http_fake import FakeHTTPServer, HTTPRequest, Reply
from helpers.paths import FIXTURES, ROOT

# One tool, in the OpenAI format every provider maps from.
TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "set_light",
            "description": "Switch a light",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "state": {"type": "string"}},
                "required": ["room", "state"],
            },
        },
    },
)


def reply(api: str, name: str) -> Reply:
    """A fresh copy of a recorded reply (tests may edit it)."""
    return copy.deepcopy(json.loads((FIXTURES / api / f"{name}.json").read_text()))


class RecordedServer(FakeHTTPServer):
    """Serves queued replies in order (the last one repeats), or asks `responder`."""

    thread_name = "recorded-api"

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[Reply] = []
        self.responder: Callable[[HTTPRequest], Reply] | None = None

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)
            self.requests.clear()

    def answer(self, request: HTTPRequest) -> Reply:
        with self._lock:  # responders keep counts; replies pop in order
            if self.responder is not None:
                return self.responder(request)
            if self.replies:
                return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            return {"status": 404, "text": "no recorded reply queued"}


def run_complete(provider: Any, request: Any) -> Any:
    """One provider.complete() on a fresh event loop (SDK clients bind to their loop)."""

    async def go() -> Any:
        try:
            return await provider.complete(request)
        finally:
            provider.close()

    return asyncio.run(go())


# --- whole runs: a suite answered by the recorded API ----------------------------
BANKING77 = ROOT / "suites" / "banking77"


def suite_answers(folder: Path = BANKING77) -> dict[str, str]:
    rows = [
        json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return {row["question"].strip(): row["answer"].strip() for row in rows}


def _question(api: str, body: dict[str, Any]) -> str:
    if api == "anthropic":
        blocks = body["messages"][-1]["content"]
        return "".join(b.get("text", "") for b in blocks if b.get("type") == "text").strip()
    if api == "gemini":
        return "".join(p.get("text", "") for p in body["contents"][-1]["parts"]).strip()
    return str(body["messages"][-1]["content"]).strip()


def _with_text(api: str, answer: dict[str, Any], text: str) -> dict[str, Any]:
    body = answer["body"]
    if api == "anthropic":
        body["content"] = [{"type": "text", "text": text}]
    elif api == "gemini":
        body["candidates"][0]["content"]["parts"] = [{"text": text}]
    else:
        body["choices"][0]["message"]["content"] = text
    return answer


class LabelResponder:
    """Answers each classification request with the recorded success reply carrying the
    right label, except on the occurrences listed in `wrong_on` {question: {1, 3}}: the
    same request comes once per repetition, so "the 3rd time" makes an example flip."""

    def __init__(
        self,
        api: str,
        answers: dict[str, str],
        wrong_on: dict[str, set[int]] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        self.api = api
        self.answers = answers
        self.wrong_on = wrong_on or {}
        self.error = error  # a recorded error reply to send instead, to every request
        self.seen: dict[str, int] = {}

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            return copy.deepcopy(self.error)
        question = _question(self.api, request["json"])
        self.seen[question] = self.seen.get(question, 0) + 1
        label = self.answers.get(question, "unknown")
        if self.seen[question] in self.wrong_on.get(question, set()):
            label = "wrong_label"
        return _with_text(self.api, reply(self.api, "success"), json.dumps({"label": label}))


def make_project(pytester: Any, models_toml: str = "") -> None:
    """banking77 under suites/, a pytest.ini (so the rootdir is the project) and models.toml."""
    shutil.copytree(BANKING77, pytester.path / "suites" / "banking77")
    pytester.makeini("[pytest]\n")
    if models_toml:
        (pytester.path / "models.toml").write_text(models_toml)


def table(lines: list[str]) -> dict[str, dict[str, str]]:
    """The pytest-distill summary table as {model: {column: cell}} (cells are 2+ spaces apart)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("suite ") and "pass rate" in line)
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("banking77"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[1]] = dict(zip(header, cells, strict=False))  # a short row leaves trailing columns out
    return rows
