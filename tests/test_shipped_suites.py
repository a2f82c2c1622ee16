"""The suites shipped in suites/ are the real public test sets, whole: every row of each
file becomes an item, and each folder says where its rows come from and under which license."""

from __future__ import annotations

import csv
import json

import pytest

from pytest_distill.suite import TaskType, load_suite

from helpers.paths import ROOT

SUITES_DIR = ROOT / "suites"

# name: rows in the source test file (see each SOURCE.txt)
ROWS = {
    "banking77": 3080,
    "trec": 500,
    "ecommerce": 96,
    "hotpotqa": 248,
    "smart-home": 50,
    "git-assistant": 116,
    "pii-redaction": 243,
    "text2sql": 50,
    "docstring": 210,
}


def _file_rows(path) -> int:
    """Data rows counted straight from the file, without the loader."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def test_the_shipped_suites_are_exactly_the_real_sets():
    shipped = {p.name for p in SUITES_DIR.iterdir() if p.is_dir()}
    assert shipped == set(ROWS)


@pytest.mark.parametrize("name", ROWS)
def test_every_row_of_the_file_is_an_example(name):
    suite = load_suite(SUITES_DIR / name)
    assert len(suite.examples) == _file_rows(suite.test_file) == ROWS[name]
    assert len({e.id for e in suite.examples}) == len(suite.examples)


@pytest.mark.parametrize(("name", "classes"), [("banking77", 77), ("trec", 6), ("ecommerce", 4)])
def test_classification_answers_cover_every_class(name, classes):
    suite = load_suite(SUITES_DIR / name)
    assert suite.task_type == TaskType.CLASSIFICATION
    assert {e.answer for e in suite.examples} == set(suite.classes) and len(suite.classes) == classes


def test_banking77_keeps_its_irregular_label_names():
    suite = load_suite(SUITES_DIR / "banking77")
    answers = {e.answer for e in suite.examples}
    assert {"reverted_card_payment?", "Refund_not_showing_up"} <= answers


@pytest.mark.parametrize("name", ROWS)
def test_each_suite_names_its_source_license_and_citation(name):
    folder = SUITES_DIR / name
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for heading in ("## Source", "## License", "## Citation"):
        assert heading in readme, f"{folder / 'README.md'}: no '{heading}' section"
    assert (folder / "SOURCE.txt").is_file()
    notice = (SUITES_DIR / "LICENSES.md").read_text(encoding="utf-8")
    assert f"`{name}`" in notice, f"suites/LICENSES.md does not list {name}"


def test_the_code_license_matches_pyproject():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Apache" in json.dumps(project.get("license"))
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_banking77_collects_one_item_per_row(pytester):
    import shutil

    shutil.copytree(SUITES_DIR / "banking77", pytester.path / "suites" / "banking77")
    result = pytester.runpytest("suites/banking77", "--collect-only", "-q", "-p", "no:cacheprovider")
    items = [line for line in result.stdout.lines if line.startswith("suites/banking77/test.jsonl::")]
    assert len(items) == 3080
    assert items[-1].endswith("-3080]")
