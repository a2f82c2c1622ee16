"""The sqlite response cache: modes, integrity, concurrent writers, kills, and whole runs."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion, Usage
from pytest_distill.runtime.cache import FILE_NAME, SqliteCache, open_cache

from helpers.recorded import LabelResponder, RecordedServer, make_project, suite_answers, table

ANSWER = Completion(text="card_arrival", usage=Usage(input_tokens=12, output_tokens=3), latency_s=0.4).to_dict()


def test_readwrite_round_trip(tmp_path):
    cache = SqliteCache(tmp_path, "readwrite")
    assert cache.get("k") is None
    cache.put("k", ANSWER)
    assert cache.get("k") == ANSWER
    assert (cache.hits, cache.misses, cache.stored, len(cache)) == (1, 1, 1, 1)
    cache.close()
    again = SqliteCache(tmp_path, "readwrite")  # it is on disk
    assert again.get("k") == ANSWER
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("mode", "serves", "stores", "replay"),
    [
        ("readwrite", True, True, False),
        ("read", True, False, False),
        ("write", False, True, False),
        ("replay", True, False, True),
    ],
)
def test_modes(tmp_path, mode, serves, stores, replay):
    SqliteCache(tmp_path, "readwrite").put("old", ANSWER)
    cache = SqliteCache(tmp_path, mode)
    assert (cache.get("old") is not None) == serves
    cache.put("new", ANSWER)
    assert (SqliteCache(tmp_path, "read").get("new") is not None) == stores
    assert cache.replay_only == replay


def test_open_cache_options(tmp_path):
    assert open_cache(None, None, tmp_path) is None
    assert open_cache(str(tmp_path / "c"), "off", tmp_path) is None
    assert open_cache("c", None, tmp_path).mode == "readwrite"
    assert open_cache("c", None, tmp_path).path == tmp_path / "c" / FILE_NAME
    assert open_cache(None, "replay", tmp_path).path == tmp_path / ".distill-cache" / FILE_NAME
    with pytest.raises(ConfigError, match="must be one of"):
        open_cache("c", "sometimes", tmp_path)


def test_a_damaged_entry_is_a_miss_never_an_answer(tmp_path):
    cache = SqliteCache(tmp_path)
    cache.put("k", ANSWER)
    cache.put("j", ANSWER)
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        conn.execute("UPDATE responses SET value = replace(value, 'card_arrival', 'lost_card') WHERE key = 'k'")
        conn.execute(
            "UPDATE responses SET value = '{\"not\": 1}', sha256 = ? WHERE key = 'j'",
            (__import__("hashlib").sha256(b'{"not": 1}').hexdigest(),),
        )
    assert cache.get("k") is None  # checksum mismatch
    assert cache.get("j") is None  # checksum right, but not an answer


def _writer(directory: str, worker: int, count: int) -> None:
    cache = SqliteCache(directory)
    for i in range(count):
        cache.put(f"w{worker}-{i}", {**ANSWER, "text": f"w{worker}-{i}"})
        cache.put("shared", {**ANSWER, "text": f"shared by {worker}"})  # every writer, same key
        assert cache.get(f"w{worker}-{i}")["text"] == f"w{worker}-{i}"
    cache.close()


def test_concurrent_writers_in_several_processes(tmp_path):
    context = multiprocessing.get_context("spawn")  # like xdist: separate interpreters
    procs = [context.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = SqliteCache(tmp_path, "read")
    assert len(cache) == 4 * 40 + 1
    assert all(cache.get(f"w{w}-{i}")["text"] == f"w{w}-{i}" for w in range(4) for i in range(40))
    assert cache.get("shared")["text"].startswith("shared by ")


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pytest_distill.runtime.cache import SqliteCache
    cache = SqliteCache(sys.argv[1])
    cache.put("committed", {"text": "kept"})
    cache._conn.execute("BEGIN IMMEDIATE")
    cache._conn.execute("INSERT INTO responses VALUES ('torn', '{\\"text\\": \\"half\\"}', 'x', 0)")
    os.kill(os.getpid(), signal.SIGKILL)  # dies inside the write transaction
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_leaves_no_entry_and_a_usable_file(tmp_path):
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL
    cache = SqliteCache(tmp_path)
    assert cache.get("committed")["text"] == "kept"
    assert cache.get("torn") is None
    cache.put("after", ANSWER)  # the file is not locked or damaged
    assert cache.get("after") == ANSWER


# --- whole runs ------------------------------------------------------------------
MODELS = '["claude-haiku-4.5"]\nbase_url = "{url}"\nmax_retries = 0\n'


def _records(junit_path):
    import xml.etree.ElementTree as ET

    rows = []
    for case in ET.parse(junit_path).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "distill.example_id" in props:  # an example's item (not a run-level testcase)
            rows.append(props)
    return rows


def test_second_run_answers_from_the_cache_and_replay_needs_no_key(pytester, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-cache-test-0001")
    with RecordedServer() as server:
        server.responder = LabelResponder("anthropic", suite_answers())
        make_project(pytester, MODELS.format(url=server.url))
        args = [
            "suites/banking77",
            "--model=claude-haiku-4.5",
            "--limit=3",
            "--repeat=1",  # frontier entries repeat 3 times by default; one answer per row here
            "--distill-cache=.cache",
            "-p",
            "no:randomly",
        ]

        first = pytester.runpytest(*args, "--junitxml=first.xml")
        first.assert_outcomes(passed=3)
        assert len(server.requests) == 3
        assert all(p["distill.cached"] == "False" for p in _records(pytester.path / "first.xml"))

        second = pytester.runpytest(*args, "--junitxml=second.xml")
        second.assert_outcomes(passed=3)
        assert len(server.requests) == 3  # nothing new was asked
        assert all(p["distill.cached"] == "True" for p in _records(pytester.path / "second.xml"))
        assert "3 answer(s) came from the response cache" in second.stdout.str()
        # cached answers took no time: no latency figures
        row = table(second.stdout.lines)["claude-haiku-4.5"]
        assert (row["p50"], row["p95"], row["p99"]) == ("-", "-", "-")

        # offline CI: no key, replay mode; a miss (a 4th example) is an error, not a request
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        replay = pytester.runpytest(
            *args[:2], "--limit=4", "--repeat=1", "--distill-cache=.cache", "--distill-cache-mode=replay"
        )
        replay.assert_outcomes(passed=3, errors=1)
        assert len(server.requests) == 3
        replay.stdout.fnmatch_lines(["*no cached answer for this request (cache in replay mode)*"])


def test_xdist_workers_share_the_cache_and_the_numbers(pytester, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-cache-test-0002")
    answers = suite_answers()
    with RecordedServer() as server:
        server.responder = LabelResponder("anthropic", answers, wrong_on={next(iter(answers)): {2}})
        make_project(pytester, MODELS.format(url=server.url))
        args = ["suites/banking77", "--model=claude-haiku-4.5", "--limit=4", "--repeat=2", "--distill-cache=.cache"]
        parallel = pytester.runpytest(*args, "-n", "2")
        parallel.assert_outcomes(passed=7, failed=1)
        assert len(server.requests) == 8
        # every worker wrote into one file; a serial rerun finds all 8 answers there
        serial = pytester.runpytest(*args, "--distill-cache-mode=replay")
        serial.assert_outcomes(passed=7, failed=1)
        assert len(server.requests) == 8
    with_n, without = table(parallel.stdout.lines)["claude-haiku-4.5"], table(serial.stdout.lines)["claude-haiku-4.5"]
    same = ["n", "pass", "miss", "err", "pass rate", "flips", "95% CI", "tok in", "tok out", "$/req", "$/1M req"]
    assert [with_n[c] for c in same] == [without[c] for c in same]
    assert with_n["pass rate"] == "87.5±17.7%" and with_n["flips"] == "1"


# --- a bad file fails safe -------------------------------------------------------


def _damaged_pages(path):
    """A real cache file whose header is intact but whose b-tree pages are garbage."""
    cache = SqliteCache(path.parent)
    for i in range(50):
        cache.put(f"k{i}", {**ANSWER, "text": "x" * 2000})
    cache.close()  # the last connection checkpoints the WAL into the file
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 6 * page
    data[2 * page : 5 * page] = b"\xa5" * (3 * page)
    path.write_bytes(bytes(data))


def _other_schema(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE responses (id INTEGER PRIMARY KEY, body BLOB)")
        conn.execute("INSERT INTO responses (body) VALUES ('theirs')")


def _text_file(path):
    path.write_text("these are my notes, not a database\n" * 20)


BAD_FILES = {"damaged pages": _damaged_pages, "another schema": _other_schema, "a text file": _text_file}


@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("mode", ["read", "replay"])
def test_a_bad_file_in_read_modes_is_one_usage_error_naming_it(tmp_path, damage, mode):
    path = tmp_path / FILE_NAME
    damage(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        SqliteCache(tmp_path, mode)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "delete it" in message and "another --distill-cache DIR" in message
    assert path.read_bytes() == before  # what a replay run needs is never thrown away


@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("mode", ["readwrite", "write"])
def test_a_bad_file_in_writing_modes_is_moved_aside_and_rebuilt_with_one_warning(tmp_path, damage, mode):
    path = tmp_path / FILE_NAME
    damage(path)
    before = path.read_bytes()
    warned: list[str] = []
    cache = SqliteCache(tmp_path, mode, warn=warned.append)
    assert len(warned) == 1 and str(path) in warned[0] and "moved it to responses.sqlite3.corrupt-" in warned[0]
    [moved] = tmp_path.glob(FILE_NAME + ".corrupt-*")
    assert moved.read_bytes() == before
    cache.put("k", ANSWER)
    assert len(cache) == 1 and SqliteCache(tmp_path, "read").get("k") == ANSWER


def test_a_bad_file_through_the_plugin_is_one_usage_error(pytester):
    (pytester.path / ".cache").mkdir()
    _text_file(pytester.path / ".cache" / FILE_NAME)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--distill-cache=.cache", "--distill-cache-mode=replay")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Traceback" not in err and f".cache/{FILE_NAME} is not usable" in err


class _FailingWrites:
    """sqlite3.Error on every write, as when the disk fills or the file turns read-only."""

    def __init__(self, monkeypatch):
        self.calls = 0

        def write(cache, key, text):
            self.calls += 1
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(SqliteCache, "_write", write)


def test_a_sqlite_error_mid_run_turns_the_cache_off_with_one_warning(tmp_path, monkeypatch):
    from pytest_distill.models.base import Request
    from pytest_distill.models.registry import PROVIDERS, ModelEntry
    from pytest_distill.runtime.engine import Engine

    monkeypatch.setitem(PROVIDERS, "fake", f"{__name__}:_Answers")
    SqliteCache(tmp_path).put("unrelated", ANSWER)
    warned: list[str] = []
    cache = SqliteCache(tmp_path, warn=warned.append)
    failing = _FailingWrites(monkeypatch)
    engine = Engine(cache=cache)
    entry = ModelEntry(name="fake", provider="fake", model="m")
    try:
        answers = [engine.complete(entry, Request(messages=({"role": "user", "content": str(i)},))) for i in range(3)]
    finally:
        engine.close()
    assert [a.text for a in answers] == ["0", "1", "2"]  # every item still answered
    assert failing.calls == 1  # the first failure turned it off: no more writes, and no more reads
    assert len(warned) == 1 and "readonly database" in warned[0] and "off for the rest of this run" in warned[0]
    assert cache.get("unrelated") is None and "off since" in cache.describe()


class _Answers:
    """A provider that echoes the last message."""

    max_concurrency = 2

    def __init__(self, entry):
        self.entry = entry

    def describe(self):
        return {"provider": "fake"}

    def start(self):
        pass

    def close(self):
        pass

    async def complete(self, request):
        return Completion(text=request.messages[-1]["content"])


def test_a_sqlite_error_mid_run_through_the_plugin_still_answers_and_prints_the_table(pytester, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-cache-test-0003")
    with RecordedServer() as server:
        server.responder = LabelResponder("anthropic", suite_answers())
        make_project(pytester, MODELS.format(url=server.url))
        pytester.makeconftest("""
            import sqlite3
            from pytest_distill.runtime.cache import SqliteCache

            def _write(cache, key, text):
                raise sqlite3.OperationalError("disk I/O error")

            SqliteCache._write = _write
        """)
        result = pytester.runpytest(
            "suites/banking77",
            "--model=claude-haiku-4.5",
            "--limit=3",
            "--repeat=1",
            "--distill-cache=.cache",
            "-p",
            "no:randomly",
        )
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "Traceback" not in out
    assert table(result.stdout.lines)["claude-haiku-4.5"]["n"] == "3"
    assert out.count("disk I/O error") == 1 and "off for the rest of this run" in out
