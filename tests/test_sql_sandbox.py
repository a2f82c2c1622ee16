"""Model-written SQL runs harmlessly: one read-only statement, in memory, bounded in time and rows.

The statement check gives clear messages; the authorizer is the real guard, so the
authorizer cases below bypass the statement check on purpose.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from pytest_distill.scoring.sql import (
    DEFAULT_LIMITS,
    QueryRejected,
    SandboxLimits,
    _Guard,
    build_database,
    execution_match,
    extract_sql,
    find_literals,
    parse_schema,
    run_query,
)

SCHEMA = """Schema:
CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category TEXT,
  price REAL,
  stock_quantity INTEGER,
  is_active BOOLEAN
);

Question: How many active products are in the Shoes category?"""
REFERENCE = "SELECT COUNT(*) FROM products WHERE category = 'Shoes' AND is_active = 1;"


@pytest.fixture
def db():
    schema = parse_schema(SCHEMA)
    conn = build_database(schema, find_literals([REFERENCE], schema.column_names), seed=1, rows=30)
    yield conn
    conn.close()


def _guarded(conn, sql, limits=DEFAULT_LIMITS):
    """Run sql under the authorizer and progress handler only (no statement-keyword check)."""
    guard = _Guard(limits)
    conn.set_authorizer(guard.authorize)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        assert guard.denied, "refused, but not by the authorizer"
        raise QueryRejected(guard.denied) from None
    finally:
        conn.set_authorizer(None)


def _count(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]


def _miss(predicted: str) -> str:
    score = execution_match(SCHEMA, REFERENCE, extract_sql(predicted))
    assert not score.passed and score.value == 0.0
    return score.explanation


# --- through the scorer: every case is a miss with a reason --------------------


@pytest.mark.parametrize(
    ("predicted", "reason"),
    [
        ("DROP TABLE products", "only a SELECT or WITH statement may run, got 'DROP'"),
        ("SELECT 1; DROP TABLE products", "more than one statement"),
        ("SELECT COUNT(*) FROM products; SELECT 1", "more than one statement"),
        ("ATTACH DATABASE '/tmp/distill-evil.db' AS evil", "only a SELECT or WITH statement may run"),
        ("PRAGMA writable_schema = ON", "only a SELECT or WITH statement may run"),
        ("WITH x AS (SELECT 1) DELETE FROM products", "not allowed: delete products"),
        ("WITH x AS (SELECT 1) INSERT INTO products (name) SELECT 'x' FROM x", "not allowed: insert products"),
        ("SELECT load_extension('/tmp/evil.so')", "not allowed: function load_extension()"),
        ("SELECT length(randomblob(2000000000))", "string or blob too big"),
        ("", "empty query"),
        ("SELECT nope FROM products", "no such column: nope"),
    ],
)
def test_rejected_queries_are_misses(predicted, reason):
    assert reason in _miss(predicted)


def test_a_recursive_cte_that_never_ends_is_stopped():
    started = time.monotonic()
    explanation = _miss("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    assert "runaway query" in explanation
    assert time.monotonic() - started < DEFAULT_LIMITS.timeout_s + 2


def test_a_huge_cross_join_is_stopped():
    explanation = _miss("SELECT COUNT(*) FROM products a, products b, products c, products d, products e, products f")
    assert "runaway query" in explanation


def test_an_endless_row_stream_hits_the_row_limit():
    explanation = _miss("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c")
    assert f"more than {DEFAULT_LIMITS.max_rows:,} rows" in explanation


def test_the_step_limit_is_deterministic_not_wall_clock(db):
    # A tiny step budget stops a query that the wall clock would allow.
    limits = SandboxLimits(max_steps=10_000, timeout_s=60)
    with pytest.raises(QueryRejected, match="10,000 SQLite steps"):
        run_query(db, "SELECT COUNT(*) FROM products a, products b, products c", limits)


# --- the authorizer alone denies everything but reads ---------------------------


@pytest.mark.parametrize(
    ("sql", "denied"),
    [
        ("DROP TABLE products", "delete sqlite_master"),  # SQLite asks about its catalog first
        ("DELETE FROM products", "delete products"),
        ("UPDATE products SET price = 0", "update products"),
        ("INSERT INTO products (name) VALUES ('x')", "insert products"),
        ("CREATE TABLE t (x)", "insert sqlite_master"),
        ("CREATE TEMP TABLE t AS SELECT 1", "insert sqlite_temp_master"),
        ("CREATE VIEW v AS SELECT 1", "insert sqlite_master"),
        ("ATTACH DATABASE ':memory:' AS other", "attach"),
        ("PRAGMA query_only = OFF", "pragma query_only"),
        ("BEGIN", "transaction"),
        ("SELECT load_extension('x')", "function load_extension()"),
    ],
)
def test_the_authorizer_denies_all_but_reads(db, sql, denied):
    before = _count(db)
    with pytest.raises(QueryRejected) as info:
        _guarded(db, sql)
    assert denied in str(info.value)
    assert _count(db) == before  # nothing changed


def test_reads_recursion_and_functions_are_allowed(db):
    assert _guarded(
        db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT group_concat(x) FROM c"
    ) == [("1,2,3",)]
    # the guarded count equals one made in Python from the rows (the generator plants 'Shoes')
    shoes = sum(1 for (category,) in db.execute("SELECT category FROM products") if (category or "").upper() == "SHOES")
    assert shoes > 0
    assert _guarded(db, "SELECT COUNT(*) FROM products WHERE upper(category) = 'SHOES'") == [(shoes,)]


def test_attach_is_impossible_even_without_the_authorizer(db):
    # Defense in depth: the attach limit is 0 and the database is query_only.
    with pytest.raises(sqlite3.Error):
        db.execute("ATTACH DATABASE ':memory:' AS other")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("DELETE FROM products")


def test_databases_live_in_memory_only(db):
    assert [row[2] for row in db.execute("PRAGMA database_list")] == [""]


# --- the model's output ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("```sql\nSELECT 1;\n```", "SELECT 1"),
        ("```\nSELECT 1\n```", "SELECT 1"),
        ("Here it is:\n```sqlite\nSELECT 2;;\n```\nDone.", "SELECT 2"),
        ("  SELECT 3 ;  ", "SELECT 3"),
        ("<think>which table?</think>\nSELECT 4", "SELECT 4"),
    ],
)
def test_extract_sql_strips_fences_and_semicolons(text, sql):
    assert extract_sql(text) == sql


def test_a_fenced_correct_answer_passes():
    score = execution_match(SCHEMA, REFERENCE, extract_sql(f"```sql\n{REFERENCE}\n```"))
    assert score.passed, score.explanation
