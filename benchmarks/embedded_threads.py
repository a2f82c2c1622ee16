"""The embedded model's latency by llama.cpp thread counts, on the first N banking77 rows.

Each configuration loads the built-in entry's GGUF in a fresh process with the given
generating / prompt-reading thread counts (llama.cpp's n_threads / n_threads_batch), sends
the plugin's own requests (its provider builds them: the constrained JSON label) one at a
time, and prints the p50 and mean latency after the first request (which reads the whole
1,700-token system prompt; later ones reuse it) and a digest of the answers, so that a
change of threads that changed an answer shows.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/embedded_threads.py [--n 40] [--configs 1x2 2x2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(n: int, threads: int, threads_batch: int) -> dict[str, object]:
    from llama_cpp import Llama

    from pytest_distill.models.providers.llama_cpp import resolve_model_path
    from pytest_distill.models.registry import Registry, create_provider
    from pytest_distill.suite.loader import load_suite
    from pytest_distill.suite.prompts import build_request

    suite = load_suite(ROOT / "suites" / "banking77")
    entry = Registry().get("smollm2-135m")
    provider = create_provider(entry)
    llm = Llama(
        model_path=str(resolve_model_path(entry.model)),
        n_ctx=entry.n_ctx,
        n_threads=threads,
        n_threads_batch=threads_batch,
        seed=0,
        verbose=False,
    )
    latencies, answers = [], []
    for example in suite.examples[:n]:
        wire = provider.build_body(build_request(example))
        started = time.perf_counter()
        reply = llm.create_chat_completion(**wire.body)
        latencies.append(time.perf_counter() - started)
        answers.append(reply["choices"][0]["message"]["content"])
    return {
        "threads": threads,
        "threads_batch": threads_batch,
        "first_s": round(latencies[0], 3),
        "p50_s": round(statistics.median(latencies[1:]), 3),
        "mean_s": round(statistics.mean(latencies[1:]), 3),
        "answers_md5": hashlib.md5("\n".join(answers).encode()).hexdigest()[:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--configs", nargs="+", default=["1x2", "2x2", "1x2", "2x2"], help="THREADSxBATCH")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child process: one configuration
        threads, batch = (int(x) for x in args.one.split("x"))
        print(json.dumps(measure(args.n, threads, batch)))
        return
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, n={args.n}, cores={os.cpu_count()}")
    for config in args.configs:
        out = subprocess.run(
            [sys.executable, __file__, "--n", str(args.n), "--one", config],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
