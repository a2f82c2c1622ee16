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

from pytest_distill.models.base import OutputConstraint, Request, ToolCall
from pytest_distill.models.registry import ModelEntry, Registry

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


def recorded_entry(name: str, base_url: str, **fields: Any) -> ModelEntry:
    """The registry's entry `name`, sent to `base_url` (the recorded server), with `fields` changed."""
    entry = Registry().get(name)
    entry.base_url = base_url
    for field, value in fields.items():
        setattr(entry, field, value)
    return entry


def classify_request(**changes: Any) -> Request:
    """The one classification request the provider tests send (constrained to two labels)."""
    return Request(
        messages=({"role": "user", "content": "Where is my new card?"},),
        system="Classify.",
        constraint=OutputConstraint(kind="choice", choices=("card_arrival", "lost_card")),
        max_tokens=64,
    ).with_params(**changes)


def tool_history_request(tool_choice: str) -> Request:
    """A second user turn after a tool call whose result the history lacks (the provider
    adds the synthetic one); the recorded tool-call replies answer it with KITCHEN_ON."""
    history = (
        {"role": "user", "content": "Turn on the hall light"},
        {"role": "assistant", "tool_calls": [{"name": "set_light", "arguments": {"room": "hall", "state": "on"}}]},
        {"role": "user", "content": "and the kitchen"},
    )
    return Request(messages=history, system="You control a home.", tools=TOOLS, tool_choice=tool_choice)


KITCHEN_ON = ToolCall("set_light", {"room": "kitchen", "state": "on"})  # the recorded tool-call replies' call


# --- secrets: a careless server that quotes back what it was sent ------------------
def echoed(request: HTTPRequest) -> str:
    """Every header the SDK sent, as a careless server would quote them back."""
    return "; ".join(f"{name}: {value}" for name, value in request["headers"].items())


def echo_in_error(api: str) -> Callable[[HTTPRequest], Reply]:
    """A responder: the API's recorded invalid-key error, its message quoting the headers."""

    def respond(request: HTTPRequest) -> Reply:
        answer = reply(api, "invalid_key")
        answer["body"]["error"]["message"] = "you sent " + echoed(request)
        return answer

    return respond


def echo_in_answer(api: str) -> Callable[[HTTPRequest], Reply]:
    """A responder: the API's recorded tool call, its text and the call's `room` quoting the headers."""

    def respond(request: HTTPRequest) -> Reply:
        said = echoed(request)
        text, arguments = "you sent " + said, {"room": said, "state": "on"}
        if api == "anthropic":
            answer = reply(api, "tool_use")
            answer["body"]["content"] = [
                {"type": "text", "text": text},
                {"type": "tool_use", "id": "toolu_1", "name": "set_light", "input": arguments},
            ]
        elif api == "gemini":
            answer = reply(api, "tool_call")
            answer["body"]["candidates"][0]["content"]["parts"] = [
                {"text": text},
                {"functionCall": {"name": "set_light", "args": arguments}},
            ]
        else:
            answer = reply(api, "tool_call")
            message = answer["body"]["choices"][0]["message"]
            message["content"] = text
            message["tool_calls"][0]["function"]["arguments"] = json.dumps(arguments)
        return answer

    return respond


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


def with_text(api: str, answer: dict[str, Any], text: str) -> dict[str, Any]:
    """A recorded reply of `api` whose only answer is `text`."""
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
        return with_text(self.api, reply(self.api, "success"), json.dumps({"label": label}))


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
