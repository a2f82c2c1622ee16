"""A trivial OpenAI-compatible server that answers instantly (stdlib only).

Used (1) as a stand-in for `vllm serve` in fault tests: run as
`python fake_server.py [LAUNCHER] serve MODEL --host H --port P [...]`, it takes the
same command line as pytest_distill/vllm_launch.py; and (2) by the overhead benchmark,
to measure the plugin's own cost per item with answers that cost nothing.

It answers /health, /v1/models and /v1/chat/completions (streaming too). The answer is
the first structured_outputs choice (so classification items pass or miss cheaply), or
FAKE_ANSWER. Behaviour by environment:
  FAKE_MODE=reject   print an argparse-style error and exit 2 (a serve argument vLLM rejects)
  FAKE_MODE=hang     never become healthy (spawns a child process too, to test group stop)
  FAKE_MODE=crash    exit 1 during start-up after printing a traceback-like line
  FAKE_DIE_AFTER=N   exit abruptly (code 3) when request N+1 arrives
  FAKE_DIE_DEVICES=D ... only the server whose CUDA_VISIBLE_DEVICES is D (one replica of several)
  FAKE_PIDFILE=F     append this process's pid (and the hang child's) to F
  FAKE_DELAY_S=X     wait X seconds before each answer
  FAKE_BODIES=F      append each request body (JSON) to F
  FAKE_PORT_LOG=F    append this server's port to F for each request (which replica answered)
  FAKE_ENV_LOG=F     append "PORT CUDA_VISIBLE_DEVICES" to F at start-up (the replica's device split)
  FAKE_LIFE_LOG=F    append "start PID MODEL TIME" at start-up and "stop PID MODEL TIME" on SIGTERM
                     (time.time()), to check that servers taking turns never overlap
With `--max-num-seqs N` on its command line (as vLLM takes it) at most N requests are
answered at a time, each FAKE_DELAY_S long: throughput rises with concurrency up to N, then
stays flat (a knee, for the saturation search's tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT = 0
LOCK = threading.Lock()
SLOTS: threading.Semaphore | None = None  # --max-num-seqs


def _args(argv: list[str]) -> tuple[str, int, str]:
    host, port, model = "127.0.0.1", 8000, "fake"
    if "serve" in argv:
        rest = argv[argv.index("serve") + 1:]
        if rest and not rest[0].startswith("-"):
            model = rest[0]
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            host = argv[i + 1]
        if arg == "--port" and i + 1 < len(argv):
            port = int(argv[i + 1])
        if arg == "--served-model-name" and i + 1 < len(argv):
            model = argv[i + 1]
    return host, port, model


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model = "fake"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload: dict | None = None, body: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = body if body is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, body=b"")
        elif self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        global COUNT
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if os.environ.get("FAKE_PORT_LOG"):
            with LOCK, open(os.environ["FAKE_PORT_LOG"], "a") as fh:
                fh.write(f"{self.server.server_address[1]}\n")
        if os.environ.get("FAKE_BODIES"):
            with LOCK, open(os.environ["FAKE_BODIES"], "a") as fh:
                fh.write(json.dumps(request, sort_keys=True) + "\n")
        with LOCK:
            COUNT += 1
            count = COUNT
        die_after = os.environ.get("FAKE_DIE_AFTER")
        die_here = os.environ.get("FAKE_DIE_DEVICES") in (None, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if die_after is not None and die_here and count > int(die_after):
            print(f"fake server: dying on request {count}", flush=True)
            os._exit(3)
        delay = float(os.environ.get("FAKE_DELAY_S", "0") or 0)
        if delay:
            if SLOTS is not None:
                with SLOTS:
                    time.sleep(delay)
            else:
                time.sleep(delay)
        structured = request.get("structured_outputs") or {}
        answer = (structured.get("choice") or [None])[0] or os.environ.get("FAKE_ANSWER", "fake answer")
        created = int(time.time())
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        if request.get("stream"):
            chunks = [
                {"id": "c", "object": "chat.completion.chunk", "created": created, "model": self.model,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": None}]},
                {"id": "c", "object": "chat.completion.chunk", "created": created, "model": self.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"id": "c", "object": "chat.completion.chunk", "created": created, "model": self.model,
                 "choices": [], "usage": usage},
            ]
            body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            self._send(200, body=body, content_type="text/event-stream")
            return
        self._send(200, {
            "id": f"fake-{count}", "object": "chat.completion", "created": created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        })


def main(argv: list[str]) -> int:
    mode = os.environ.get("FAKE_MODE", "")
    pidfile = os.environ.get("FAKE_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    print("fake server: " + " ".join(argv), flush=True)
    if mode == "reject":
        print("vllm serve: error: unrecognized arguments: " + " ".join(a for a in argv if a.startswith("--bogus")),
              flush=True)
        return 2
    if mode == "crash":
        print("RuntimeError: fake engine core failed to start", flush=True)
        return 1
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if pidfile:
            with open(pidfile, "a") as fh:
                fh.write(f"{child.pid}\n")
        time.sleep(600)
        return 0
    host, port, model = _args(argv)
    life_log = os.environ.get("FAKE_LIFE_LOG")
    if life_log:
        with open(life_log, "a") as fh:
            fh.write(f"start {os.getpid()} {model} {time.time():.6f}\n")

        def _stopped(signum, frame) -> None:
            with open(life_log, "a") as fh:
                fh.write(f"stop {os.getpid()} {model} {time.time():.6f}\n")
            os._exit(0)

        signal.signal(signal.SIGTERM, _stopped)
    if os.environ.get("FAKE_ENV_LOG"):
        with open(os.environ["FAKE_ENV_LOG"], "a") as fh:
            fh.write(f"{port} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n")
    Handler.model = model
    if "--max-num-seqs" in argv:
        global SLOTS
        SLOTS = threading.Semaphore(int(argv[argv.index("--max-num-seqs") + 1]))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"fake server: listening on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
