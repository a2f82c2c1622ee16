"""One real HTTP server on 127.0.0.1 for the fakes: a daemon thread, a free port, a request log.

A real server (rather than respx) because the SDKs send through httpx2, which respx does
not patch, and because a server also serves a pytest run in a subprocess or pytester.
Subclasses say what to answer by overriding `answer(request) -> reply`:

    request  {"method", "path", "headers" (lower-case names), "json" (None, a decoded body,
             or the raw text when it is not JSON)}
    reply    {"status": 200, "headers": {...}, "body": <JSON> | "text": "<raw body>",
             "content_type": "text/plain", "delay_s": 0}   (the format of tests/fixtures/)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = dict[str, Any]
HTTPRequest = dict[str, Any]


def free_port() -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a run opens a burst of concurrent connections at once


class FakeHTTPServer:
    """Starts on `start()` or `with`; records every request in `requests`, in arrival order."""

    thread_name = "fake-http"

    def __init__(self) -> None:
        self.requests: list[HTTPRequest] = []
        self._lock = threading.Lock()  # answer() runs on the server's threads
        self._server: _Server | None = None

    def answer(self, request: HTTPRequest) -> Reply:
        raise NotImplementedError

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the SDKs reuse connections

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                request = {
                    "method": self.command,
                    "path": self.path,
                    "json": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
                with fake._lock:
                    fake.requests.append(request)
                fake._send(self, fake.answer(request))

            do_GET = do_POST = _serve  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client is given (subclasses may add a path such as /v1)."""
        return self.origin

    # --- sending -------------------------------------------------------------
    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.get("delay_s"):
            time.sleep(reply["delay_s"])
        if "body" in reply:
            payload = json.dumps(reply["body"]).encode()
            content_type = "application/json"
        else:
            payload = reply.get("text", "").encode()
            content_type = reply.get("content_type", "text/plain")
        try:
            handler.send_response(reply.get("status", 200))
            for key, value in {"content-type": content_type, **reply.get("headers", {})}.items():
                handler.send_header(key, str(value))
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
