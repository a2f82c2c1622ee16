"""Client throughput and memory per item (run by hand, not a test; docs/benchmarks.md).

A local fake OpenAI-compatible server that answers instantly (asyncio, keep-alive, its own
process), and a classification suite of N rows. For each N, pytest runs the suite in a
fresh process against the fake; reported: wall time, items/s end to end, the request
phase's req/s (first request's start to the last answer, from results.json), and the
pytest process's peak RSS (wait4's ru_maxrss). With --profile, a cProfile of one run.

    python benchmarks/client_throughput.py 10000 20000 50000 [--profile 20000] [-n 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPLY = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "fast",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "sports"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
    }
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(REPLY)).encode()
    + b"\r\n\r\n"
    + REPLY
)
LABELS = ["sports", "weather", "food", "music"]


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _server(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_instant_server() -> tuple[multiprocessing.Process, str]:
    """The instant fake in its own process (so it costs the measured client no CPU); its /v1 URL."""
    port = free_port()
    server = multiprocessing.Process(target=_server, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    return server, f"http://127.0.0.1:{port}/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_project(root: Path, n: int, url: str, concurrency: int) -> None:
    suite = root / "suites" / "topics"
    suite.mkdir(parents=True)
    (suite / "job_description.json").write_text(
        json.dumps(
            {
                "task_description": "Classify the topic of the text.",
                "classes_description": {label: label for label in LABELS},
            }
        )
    )
    (suite / "config.yaml").write_text("base:\n  task: classification\n")
    with open(suite / "test.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"question": f"text number {i} about something", "answer": LABELS[i % 4]}) + "\n")
    (root / "models.toml").write_text(
        f'["fast"]\nprovider = "openai-compatible"\nmodel = "fast"\nbase_url = "{url}"\n'
        f'temperature = 0.0\nmax_retries = 0\nconstraint_style = "none"\nmax_concurrency = {concurrency}\n'
    )


def run(n: int, url: str, concurrency: int, extra: list[str], profile: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, n, url, concurrency)
        command = [
            sys.executable,
            *(["-m", "cProfile", "-o", str(profile)] if profile else []),
            "-m",
            "pytest",
            "suites",
            "--model=fast",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--distill-report=out",
            *extra,
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        records = json.loads((root / "out" / "results.json").read_text())["records"]
        answered = [r for r in records if r["finished_at"] and r["latency_s"]]
        span = max(r["finished_at"] for r in answered) - min(r["finished_at"] - r["latency_s"] for r in answered)
        errors = sum(r["outcome"] == "error" for r in records)
        return {
            "n": n,
            "wall_s": wall,
            "items_per_s": n / wall,
            "request_phase_req_per_s": len(answered) / span,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "errors": errors,
            "exit": process.returncode,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", type=int, help="also profile a run of this many items (cProfile)")
    parser.add_argument("-n", dest="workers", help="pytest-xdist workers")
    args = parser.parse_args()
    server, url = start_instant_server()
    extra = ["-n", args.workers] if args.workers else []
    results = []
    try:
        for n in args.sizes:
            result = run(n, url, args.concurrency, extra, None)
            results.append(result)
            print(json.dumps(result), flush=True)
        if len(results) > 1:
            a, b = results[0], results[-1]
            growth_kib = (b["peak_rss_mib"] - a["peak_rss_mib"]) * 1024 / (b["n"] - a["n"])
            print(json.dumps({"rss_growth_kib_per_item": growth_kib}))
        if args.profile:
            out = Path("client_throughput.prof").resolve()
            run(args.profile, url, args.concurrency, extra, out)
            import pstats

            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(25)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
