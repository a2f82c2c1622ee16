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


def reply(api: str, name: str) -> dict[str, Any]:
    """A fresh copy of a recorded reply (tests may edit it)."""
    return copy.deepcopy(json.loads((FIXTURES / api / f"{name}.json").read_text()))


class RecordedServer:
    """Serves queued replies in order (the last one repeats), or asks `responder`."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.requests: list[dict[str, Any]] = []  # what the SDKs sent: method, path, headers, json
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
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "json": body}
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
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
