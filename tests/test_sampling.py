"""--sample N: a seeded sample per suite, stratified by label for classification suites;
the same on every machine, serially and under xdist, before --distill-shard's split."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from pytest_distill.cli import main as cli_main
from pytest_distill.core.sampling import allocate, sample_positions

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project, numbered_rows
from helpers.paths import ROOT

# 3 classes of 50, 30 and 20 rows, interleaved
LABELS = [label for i in range(50) for label in ("a", "b", "c")[: 1 + (i < 30) + (i < 20)]]


# --- the pure function --------------------------------------------------------------------


def test_a_stratified_sample_keeps_each_class_in_proportion():
    positions = sample_positions(len(LABELS), 20, 0, "s", LABELS)
    assert len(positions) == 20 == len(set(positions)) and positions == sorted(positions)
    assert Counter(LABELS[p] for p in positions) == {"a": 10, "b": 6, "c": 4}


def test_every_class_has_at_least_one_row_when_the_sample_allows():
    labels = ["big"] * 1000 + ["tiny1", "tiny2", "tiny3"]
    positions = sample_positions(len(labels), 4, 0, "s", labels)
    assert Counter(labels[p] for p in positions) == {"big": 1, "tiny1": 1, "tiny2": 1, "tiny3": 1}
    fewer = sample_positions(len(labels), 2, 0, "s", labels)  # fewer rows than classes: the largest first
    assert len(fewer) == 2 and labels[fewer[0]] == "big"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 99, 100])
def test_largest_remainder_sums_to_the_size_and_never_exceeds_a_class(size):
    counts = {"a": 60, "b": 30, "c": 7, "d": 3, "e": 1}
    quotas = allocate(counts, size, random.Random(1))
    assert sum(quotas.values()) == size
    assert all(0 <= quotas[c] <= counts[c] for c in counts)
    if size >= len(counts):
        assert min(quotas.values()) >= 1


def test_the_sample_depends_on_the_seed_and_the_suite_only():
    first = sample_positions(len(LABELS), 20, 0, "s", LABELS)
    assert sample_positions(len(LABELS), 20, 0, "s", LABELS) == first
    assert sample_positions(len(LABELS), 20, 1, "s", LABELS) != first
    assert sample_positions(len(LABELS), 20, 0, "other", LABELS) != first
    # fixed across Python versions and machines: random.Random(str) hashes with SHA-512
    assert sample_positions(100, 5, 0, "s") == sample_positions(100, 5, 0, "s")
    assert sample_positions(100, 5, 0, "s") != sample_positions(100, 5, 7, "s")


def test_a_sample_as_large_as_the_suite_is_the_suite():
    assert sample_positions(5, 5, 0, "s") == [0, 1, 2, 3, 4]
    assert sample_positions(5, 50, 3, "s", list("aabbc")) == [0, 1, 2, 3, 4]


def test_an_unlabelled_sample_is_uniform_and_of_the_size():
    positions = sample_positions(1000, 100, 0, "s")
    assert len(set(positions)) == 100 and positions == sorted(positions)
    assert 30 <= sum(p < 500 for p in positions) <= 70


def test_a_sample_of_nothing_is_refused():
    with pytest.raises(ValueError):
        sample_positions(10, 0, 0, "s")


# --- collection: banking77 ------------------------------------------------------------------

_ID = re.compile(r"banking77\[[^\]]*-(\d{4})\]")


def _collected_ids(pytester, *args):
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "banking77"), "--collect-only", "-q", "-p", "no:cacheprovider", *args
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    return sorted(m.group(1) for line in result.outlines if (m := _ID.search(line)))


@pytest.fixture
def in_checkout(pytester, monkeypatch):
    """Collect the shipped banking77 suite from the repository's own rootdir."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.chdir()
    return pytester


def test_sample_200_of_banking77_is_stratified_and_the_same_serially_and_under_xdist(in_checkout):
    serial = _collected_ids(in_checkout, "--sample=200", f"--rootdir={ROOT}")
    assert len(serial) == 200 == len(set(serial))
    assert _collected_ids(in_checkout, "--sample=200", f"--rootdir={ROOT}") == serial
    assert _collected_ids(in_checkout, "--sample=200", f"--rootdir={ROOT}", "-n", "2") == serial
    rows = (ROOT / "suites" / "banking77" / "test.jsonl").read_text().splitlines()
    labels = Counter(json.loads(rows[int(i) - 1])["answer"] for i in serial)
    assert len(labels) == 77  # every class, 2 or 3 rows each (3,080 rows, 40 per class)
    assert set(labels.values()) <= {2, 3}
    other = _collected_ids(in_checkout, "--sample=200", "--sample-seed=1", f"--rootdir={ROOT}")
    assert len(other) == 200 and other != serial


# --- runs against the fake server -------------------------------------------------------------

MODELS = {"good": "correct", "some": "wrong:2,7,12"}


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(30)) as fake:
        yield fake


def _ran_ids(result):
    """The example ids run, from -v's PASSED / FAILED lines (serial and xdist word them differently)."""
    return sorted(
        {
            m.group(1)
            for line in result.outlines
            if "PASSED" in line or "FAILED" in line
            for m in re.finditer(r"topics\[good-(\d{4})\]", line)
        }
    )


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_a_sampled_run_says_of_how_many_and_records_it(pytester, server, workers):
    distill_project(pytester, server, MODELS)
    result = pytester.runpytest(
        "suites", "--model=good", "--sample=8", "-v", "-p", "no:cacheprovider", "--distill-report=out", *workers
    )
    assert result.ret == 0
    ran = _ran_ids(result)
    assert len(ran) == 8
    out = result.stdout.str()
    assert re.search(r"topics\s+good\s+8/30\s", out), out
    assert "topics: n=8 of 30 examples, a sample stratified by label (--sample-seed 0)" in out
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert document["run"]["sample"] == 8 and document["run"]["sample_seed"] == 0
    assert document["suites"]["topics"]["sample"] == {"size": 8, "total": 30, "seed": 0, "stratified": True}
    assert "| 8 of 30 |" in (pytester.path / "out" / "summary.md").read_text()


def test_the_same_sample_serially_and_under_xdist_and_another_with_another_seed(pytester, server):
    distill_project(pytester, server, MODELS)
    args = ["suites", "--model=good", "--sample=8", "-v", "-p", "no:cacheprovider"]
    serial = _ran_ids(pytester.runpytest(*args))
    assert _ran_ids(pytester.runpytest(*args, "-n", "2")) == serial
    assert _ran_ids(pytester.runpytest(*args, "--sample-seed=5")) != serial


def test_shards_of_a_sample_partition_the_sample(pytester, server):
    distill_project(pytester, server, MODELS)
    args = ["suites", "--model=good", "--sample=12", "-v", "-p", "no:cacheprovider"]
    whole = _ran_ids(pytester.runpytest(*args))
    parts = [_ran_ids(pytester.runpytest(*args, f"--distill-shard={k}/3")) for k in (1, 2, 3)]
    assert sorted(i for part in parts for i in part) == whole


def test_merge_refuses_shards_of_different_samples(pytester, server, capsys, monkeypatch):
    distill_project(pytester, server, MODELS)
    monkeypatch.chdir(pytester.path)
    args = ["suites", "--model=good", "--sample=12", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--distill-shard=1/2", "--distill-report=s1")
    pytester.runpytest(*args, "--distill-shard=2/2", "--distill-report=s2", "--sample-seed=3")
    capsys.readouterr()
    assert cli_main(["merge", "s1", "s2", "--out", "merged"]) == pytest.ExitCode.USAGE_ERROR
    assert "not shards of one run: different --sample-seed (0 vs 3)" in capsys.readouterr().err
    pytester.runpytest(*args, "--distill-shard=2/2", "--distill-report=s2")
    assert cli_main(["merge", "s1", "s2", "--out", "merged"]) == 0
    merged = json.loads((pytester.path / "merged" / "results.json").read_text())
    assert merged["run"]["sample"] == 12 and merged["suites"]["topics"]["sample"]["size"] == 12
    assert len(merged["records"]) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample=0"], "--sample must be at least 1, got 0"),
        (["--sample=5", "--limit=3"], "--limit and --sample both choose the examples: give one of them"),
        (["--sample-seed=3"], "--sample-seed chooses --sample's sample: give --sample N too"),
        (["--distill-show-misses=some"], "--distill-show-misses takes a number, all or none; got 'some'"),
    ],
)
def test_bad_sample_options_are_one_line_usage_errors(pytester, server, args, message):
    distill_project(pytester, server, MODELS)
    result = pytester.runpytest("suites", "--model=good", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
