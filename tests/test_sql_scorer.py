"""Execution equivalence of SQL queries on generated data, and the text2sql data sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import ScoringError
from pytest_distill.scoring.sql import (
    DATABASES,
    build_database,
    execution_match,
    find_literals,
    is_ordered,
    parse_schema,
    schema_statements,
    score_sql_execution,
)
from pytest_distill.suite import TaskType, load_suite

from helpers.paths import ROOT, SHARED_DATASETS

SHOP = """Schema:
CREATE TABLE vendors (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  country TEXT
);

CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category TEXT,
  price REAL,
  stock_quantity INTEGER,
  vendor_id INTEGER REFERENCES vendors(id),
  added_on DATE
);

Question: (varies)"""


def _same(reference: str, predicted: str) -> bool:
    return execution_match(SHOP, reference, predicted).passed


# --- equivalence -------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "predicted"),
    [
        # aliases, case and formatting
        (
            "SELECT COUNT(*) FROM products WHERE category = 'Shoes'",
            "select count(id) as n\nfrom products p where p.category='Shoes'",
        ),
        # columns in another order
        (
            "SELECT category, AVG(price) FROM products GROUP BY category",
            "SELECT AVG(price) AS avg_price, category FROM products GROUP BY category",
        ),
        # the same number computed another way (floating point differs in the last bits)
        (
            "SELECT category, AVG(price) FROM products GROUP BY category",
            "SELECT category, SUM(price) / COUNT(price) FROM products GROUP BY category",
        ),
        # a join written as a join or as a WHERE
        (
            "SELECT p.name, v.name FROM products p JOIN vendors v ON p.vendor_id = v.id",
            "SELECT products.name, vendors.name FROM vendors, products WHERE products.vendor_id = vendors.id",
        ),
        # IN vs OR; BETWEEN vs two comparisons
        (
            "SELECT name FROM products WHERE category IN ('Shoes', 'Hats')",
            "SELECT name FROM products WHERE category = 'Hats' OR category = 'Shoes'",
        ),
        (
            "SELECT name FROM products WHERE price BETWEEN 20 AND 40",
            "SELECT name FROM products WHERE price >= 20 AND price <= 40",
        ),
        # an unordered reference accepts any order
        (
            "SELECT name FROM products WHERE stock_quantity = 0",
            "SELECT name FROM products WHERE stock_quantity = 0 ORDER BY name DESC",
        ),
        # a subquery vs a join
        (
            "SELECT name FROM vendors WHERE id IN (SELECT vendor_id FROM products WHERE category = 'Shoes')",
            "SELECT DISTINCT v.name FROM vendors v JOIN products p ON p.vendor_id = v.id WHERE p.category = 'Shoes'",
        ),
        # dates as ISO text
        (
            "SELECT COUNT(*) FROM products WHERE added_on >= '2024-01-01' AND added_on < '2025-01-01'",
            "SELECT COUNT(*) FROM products WHERE strftime('%Y', added_on) = '2024'",
        ),
    ],
)
def test_equivalent_queries_pass(reference, predicted):
    score = execution_match(SHOP, reference, predicted)
    assert score.passed, score.explanation


@pytest.mark.parametrize(
    ("reference", "predicted", "why"),
    [
        (
            "SELECT COUNT(*) FROM products WHERE category = 'Shoes'",
            "SELECT COUNT(*) FROM products WHERE category = 'shoes'",
            "different rows",
        ),
        ("SELECT COUNT(*) FROM products WHERE category = 'Shoes'", "SELECT COUNT(*) FROM products", "different rows"),
        ("SELECT name FROM products WHERE price > 50", "SELECT name FROM products WHERE price >= 50", ""),
        (
            "SELECT name, price FROM products ORDER BY price DESC LIMIT 5",
            "SELECT name, price FROM products ORDER BY price ASC LIMIT 5",
            "",
        ),
        ("SELECT name FROM products", "SELECT * FROM products", "columns instead of 1"),
        (
            "SELECT name, price FROM products WHERE category = 'Shoes' ORDER BY price DESC",
            "SELECT name, price FROM products WHERE category = 'Shoes' ORDER BY price",
            "in a different order",
        ),
        (
            "SELECT v.name FROM vendors v LEFT JOIN products p ON p.vendor_id = v.id WHERE p.id IS NULL",
            "SELECT v.name FROM vendors v JOIN products p ON p.vendor_id = v.id WHERE p.id IS NULL",
            "rows instead of",
        ),
    ],
)
def test_wrong_queries_miss(reference, predicted, why):
    score = execution_match(SHOP, reference, predicted)
    assert not score.passed
    assert why in score.explanation
    assert predicted[:40] in score.explanation  # the query is shown


def test_order_matters_only_when_the_reference_orders_its_rows():
    assert is_ordered("SELECT a FROM t ORDER BY a")
    assert not is_ordered("SELECT a, RANK() OVER (ORDER BY b) FROM t")
    assert not is_ordered("WITH x AS (SELECT a FROM t ORDER BY a LIMIT 3) SELECT a FROM x")


def test_literals_of_both_queries_are_planted_in_their_columns():
    schema = parse_schema(SHOP)
    literals = find_literals(
        [
            "SELECT name FROM products WHERE category = 'Shoes' AND price > 50",
            "SELECT name FROM products WHERE lower(category) = 'boots' OR name LIKE '%Pro%'",
        ],
        schema.column_names,
    )
    assert literals.strings["category"] == ["Shoes", "boots"]
    assert literals.likes["name"] == ["%Pro%"]
    assert literals.numbers["price"] == [50]
    conn = build_database(schema, literals, seed=1, rows=30)
    categories = {row[0] for row in conn.execute("SELECT category FROM products")}
    assert {"Shoes", "boots"} <= categories
    assert conn.execute("SELECT COUNT(*) FROM products WHERE name LIKE '%Pro%'").fetchone()[0] > 0
    prices = [row[0] for row in conn.execute("SELECT price FROM products")]
    assert any(p > 50 for p in prices) and any(p <= 50 for p in prices)


def test_generated_data_is_deterministic():
    schema = parse_schema(SHOP)
    literals = find_literals(["SELECT name FROM products WHERE category = 'Shoes'"], schema.column_names)
    dumps = []
    for _ in range(2):
        conn = build_database(schema, literals, seed=2, rows=12)
        dumps.append(list(conn.iterdump()))
        conn.close()
    assert dumps[0] == dumps[1]


def test_foreign_keys_point_at_parents_and_leave_some_childless():
    schema = parse_schema(SHOP)
    conn = build_database(schema, find_literals([], schema.column_names), seed=1, rows=30)
    orphans = conn.execute("SELECT COUNT(*) FROM products WHERE vendor_id NOT IN (SELECT id FROM vendors)").fetchone()[
        0
    ]
    childless = conn.execute(
        "SELECT COUNT(*) FROM vendors WHERE id NOT IN (SELECT vendor_id FROM products)"
    ).fetchone()[0]
    assert orphans == 0 and childless > 0


def test_schema_without_semicolons_is_read():
    text = "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT)\n\nCREATE TABLE b (id INTEGER, a_id INTEGER)\n\nQuestion: q"
    assert schema_statements(text) == [
        "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT);",
        "CREATE TABLE b (id INTEGER, a_id INTEGER);",
    ]
    assert [c.kind for c in parse_schema(text).tables[1].columns] == ["int", "fk"]


def test_a_bad_reference_or_schema_is_an_error_not_a_miss():
    with pytest.raises(ScoringError, match="reference query does not run"):
        execution_match(SHOP, "SELECT nope FROM products", "SELECT 1")
    with pytest.raises(ScoringError, match="no CREATE TABLE"):
        execution_match("Question: how many?", "SELECT 1", "SELECT 1")


# --- the data sets -----------------------------------------------------------


def _mutants(sql: str) -> dict[str, str]:
    """Wrong versions of a reference query: another literal, comparison, aggregate or order,
    or the WHERE clause dropped."""
    sql = sql.strip().rstrip(";")
    out = {}
    literal = re.search(r"'([^']*)'", sql)
    if literal and literal.group(1).lower() != "now":
        value = literal.group(1)
        wrong = value.replace("%", "", 1) + "zz%" if "%" in value else value + "zz"
        out["literal"] = sql[: literal.start()] + f"'{wrong}'" + sql[literal.end() :]
    for a, b in ((">=", "<"), ("<=", ">"), (" > ", " <= "), (" < ", " >= "), (" = ", " != "), (" NOT IN ", " IN ")):
        if a in sql:
            out["comparison"] = sql.replace(a, b, 1)
            break
    where = re.search(r"\bWHERE\b(.*?)(?=\bGROUP BY\b|\bORDER BY\b|\bLIMIT\b|$)", sql, re.S)
    if where and "(" not in where.group(1):
        out["no_where"] = sql[: where.start()] + sql[where.end() :]
    for a, b in (("MAX(", "MIN("), ("MIN(", "MAX("), ("AVG(", "SUM("), ("SUM(", "AVG("), ("COUNT(*)", "COUNT(*) - 1")):
        if a in sql:
            out["aggregate"] = sql.replace(a, b, 1)
            break
    if re.search(r"\b(DESC|ASC)\b", sql):
        out["order"] = re.sub(r"\b(DESC|ASC)\b", lambda m: "ASC" if m.group(1) == "DESC" else "DESC", sql, count=1)
    return out


def _check_dataset(folder: Path) -> None:
    suite = load_suite(folder)
    assert suite.task_type == TaskType.QUESTION_ANSWERING
    for example in suite.examples:
        itself = score_sql_execution(example, Completion(text=example.answer))
        assert itself.passed, f"{example.location}: {itself.explanation}"
        # Non-vacuous: the reference returns rows on every generated database.
        assert min(itself.details["reference_rows"]) > 0, f"{example.location}: no rows for {example.answer}"
        fenced = score_sql_execution(example, Completion(text=f"```sql\n{example.answer}\n```"))
        assert fenced.passed
        mutants = _mutants(example.answer)
        assert mutants, f"{example.location}: no wrong query made from {example.answer}"
        for kind, wrong in mutants.items():
            score = score_sql_execution(example, Completion(text=wrong))
            assert not score.passed, f"{example.location}: {kind} mutant {wrong!r} scored as equivalent"


def test_shared_text2sql_dataset():
    folder = SHARED_DATASETS / "text2sql"
    if not (folder / "test.jsonl").is_file():
        pytest.skip(f"{folder} is absent")
    _check_dataset(folder)


def test_project_text2sql_suite():
    suite = load_suite(ROOT / "suites" / "text2sql")
    assert len(suite.examples) == 50 and suite.settings.scorer == "sql_execution"  # distil-text2sql's test set
    _check_dataset(ROOT / "suites" / "text2sql")


def test_every_generated_database_is_compared():
    # A prediction that agrees with the reference on the smallest database (LIMIT returns all
    # of its rows) but not on the larger ones: only comparing on every database catches it.
    itself = execution_match(SHOP, "SELECT id FROM products", "SELECT id FROM products")
    assert itself.passed and itself.details["databases"] == len(DATABASES) >= 2
    sizes = itself.details["reference_rows"]
    assert len(set(sizes)) == len(sizes), f"the databases must differ in size: {sizes}"
    score = execution_match(SHOP, "SELECT id FROM products", f"SELECT id FROM products LIMIT {min(sizes)}")
    assert not score.passed, score.explanation
