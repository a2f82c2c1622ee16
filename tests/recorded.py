"""Recorded API replies, served to the real SDK clients by a real HTTP server on 127.0.0.1.

A local server (rather than respx) because the SDKs send through httpx2, which respx
does not patch, and because it also serves a pytest run in a subprocess or pytester.
Fixture files (fixtures/<api>/<name>.json) hold one reply each:
{"status": 200, "headers": {...}, "body": <the API's JSON> | "text": "<raw body>", "delay_s": 0}.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# One tool, in the OpenAI format every provider maps from.
TOOLS = ({"type": "function", "function": {
    "name": "set_light", "description": "Switch a light",
    "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "state": {"type": "string"}},
                   "required": ["room", "state"]}}},)


def reply(api: str, name: str) -> dict[str, Any]:
    """A fresh copy of a recorded reply (tests may edit it)."""
    return copy.deepcopy(json.loads((FIXTURES / api / f"{name}.json").read_text()))


class RecordedServer:
    """Serves queued replies in order (the last one repeats), or asks `responder`."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.requests: list[dict[str, Any]] = []  # what the SDKs sent: method, path, headers (lower-case), json
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = {"method": self.command, "path": self.path, "headers": headers, "json": body}
                with server._lock:
                    server.requests.append(request)
                    if server.responder is not None:
                        answer = server.responder(request)
                    elif server.replies:
                        answer = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                    else:
                        answer = {"status": 404, "text": "no recorded reply queued"}
                if answer.get("delay_s"):
                    time.sleep(answer["delay_s"])
                if "body" in answer:
                    payload = json.dumps(answer["body"]).encode()
                    content_type = "application/json"
                else:
                    payload = answer.get("text", "").encode()
                    content_type = answer.get("content_type", "text/plain")
                try:
                    self.send_response(answer.get("status", 200))
                    headers = {"content-type": content_type, **answer.get("headers", {})}
                    for key, value in headers.items():
                        self.send_header(key, str(value))
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_POST = do_GET = _serve

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *replies: dict[str, Any]) -> None:
        with self._lock:
            self.replies = list(replies)
            self.requests.clear()

    def __enter__(self) -> RecordedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def run_complete(provider: Any, request: Any) -> Any:
    """One provider.complete() on a fresh event loop (SDK clients bind to their loop)."""
    import asyncio

    async def go() -> Any:
        try:
            return await provider.complete(request)
        finally:
            provider.close()

    return asyncio.run(go())


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on: connection refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- whole runs: a suite answered by the recorded API ----------------------------
ROOT = FIXTURES.parent
BANKING77 = ROOT / "suites" / "banking77"


def suite_answers(folder: Path = BANKING77) -> dict[str, str]:
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
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

    def __init__(self, api: str, answers: dict[str, str], wrong_on: dict[str, set[int]] | None = None,
                 error: dict[str, Any] | None = None) -> None:
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
    import shutil

    shutil.copytree(BANKING77, pytester.path / "suites" / "banking77")
    pytester.makeini("[pytest]\n")
    if models_toml:
        (pytester.path / "models.toml").write_text(models_toml)


def table(lines: list[str]) -> dict[str, dict[str, str]]:
    """The pytest-distill summary table as {model: {column: cell}} (cells are 2+ spaces apart)."""
    import re

    start = next(i for i, line in enumerate(lines) if line.startswith("suite ") and "pass rate" in line)
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("banking77"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[1]] = dict(zip(header, cells))
    return rows
