"""The plugin's own cost per item, with answers that cost nothing.

  (a) plain pytest: 10,000 trivial parametrized tests (`assert i >= 0`), plugin disabled;
  (b) pytest-distill: a 10,000-example classification suite whose every answer comes
      from the response cache in replay mode (--distill-cache-mode=replay): no request
      is sent, so what is left is collection, items, scoring, records and the report.

The cache is filled first by evaluating the suite once against benchmarks/fake_server.py
(instant answers; the fake answers the first label, and every example's answer is the
first label, so all items pass, like the trivial tests). Prints both wall times and
their ratio (target: <= 1.5).

    python benchmarks/overhead.py [--n 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_distill.runtime.servers import ManagedServer, free_port  # noqa: E402

LABELS = {"alpha": "The first kind.", "beta": "The second kind.", "gamma": "The third kind.",
          "delta": "The fourth kind."}


def write_project(folder: Path, n: int, base_url: str) -> None:
    suite = folder / "suites" / "bulk"
    suite.mkdir(parents=True)
    (suite / "job_description.json").write_text(json.dumps(
        {"task_description": "Classify the text.", "classes_description": LABELS}))
    (suite / "config.yaml").write_text("base:\n  task: classification\n")
    with (suite / "test.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"question": f"Example text number {i}.", "answer": "alpha"}) + "\n")
    (folder / "models.toml").write_text(
        f'[fake]\nprovider = "openai-compatible"\nmodel = "fake"\nbase_url = "{base_url}"\n'
        'constraint_style = "structured_outputs"\nmax_concurrency = 16\ntemperature = 0.0\n')
    (folder / "test_trivial.py").write_text(
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('i', range({n}))\n"
        "def test_trivial(i):\n    assert i >= 0\n")


ENV = dict(os.environ)


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - started
    last = [line for line in done.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
    return elapsed, (last[-1].strip("= ") if last else done.stdout[-800:] + done.stderr[-800:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-bytecode", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE (every run then compiles and assertion-rewrites "
                             "the plugin and the openai SDK again); default: unset it, as on most machines")
    args = parser.parse_args()
    if not args.no_bytecode:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(tempfile.mkdtemp(prefix="distill-overhead-"))
    port = free_port()
    server = ManagedServer(
        name="fake", kind="fake", command=[sys.executable, str(ROOT / "benchmarks" / "fake_server.py"), "serve",
                                           "fake", "--host", "127.0.0.1", "--port", str(port)],
        env=dict(os.environ), base_url=f"http://127.0.0.1:{port}/v1", health_url=f"http://127.0.0.1:{port}/health",
        log_path=work / "fake.log", startup_timeout_s=30)
    server.start()
    try:
        write_project(work, args.n, server.base_url)
        common = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts="]
        distill = common + ["suites", "--model=fake", f"--distill-cache={work / 'cache'}"]
        fill_s, fill = timed(distill + ["--distill-cache-mode=readwrite"], work)
        print(f"filled the cache against the fake server: {fill_s:.1f} s [{fill}]", flush=True)
    finally:
        server.stop()  # replay must not need it
    timed(common + ["test_trivial.py", "-p", "no:distill", "--co"], work)  # bytecode caches, untimed
    results = []
    for round_ in range(args.rounds):
        plain_s, plain = timed(common + ["test_trivial.py", "-p", "no:distill"], work)
        replay_s, replay = timed(distill + ["--distill-cache-mode=replay"], work)
        results.append((plain_s, replay_s))
        print(f"round {round_ + 1}: (a) plain pytest {plain_s:.1f} s [{plain}]   "
              f"(b) pytest-distill replay {replay_s:.1f} s [{replay}]   ratio {replay_s / plain_s:.2f}", flush=True)
    plain_s = sum(r[0] for r in results) / len(results)
    replay_s = sum(r[1] for r in results) / len(results)
    print(f"PYTHONDONTWRITEBYTECODE={ENV.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    print(f"N={args.n}: plain pytest {plain_s:.1f} s ({1000 * plain_s / args.n:.2f} ms/item), pytest-distill "
          f"{replay_s:.1f} s ({1000 * replay_s / args.n:.2f} ms/item), ratio {replay_s / plain_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
