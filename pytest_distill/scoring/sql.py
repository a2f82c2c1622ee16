"""Text2SQL by execution: run the reference and the predicted query on generated data.

The schema comes from the question (its CREATE TABLE statements). For each of a few
deterministic, seeded in-memory SQLite databases the scorer fills the tables with rows
whose values are drawn so that the WHERE clauses of typical queries hit (literals found
in *both* queries are planted in the columns they are compared with), runs both queries
and compares the result sets: as multisets, or as lists when the reference orders its
rows. Column names and column order don't count (aliases are free).

Running model-written SQL must be harmless, so a predicted query runs in a sandbox:
- in-memory database only; the attach limit is 0 and `query_only` is on;
- a single statement that starts with SELECT or WITH (checked on tokens, and sqlite3
  itself refuses a second statement);
- sqlite3's authorizer denies every action except reading tables, calling (non-extension)
  functions and recursive CTEs: no writes, DDL, ATTACH, PRAGMA, transactions,
  load_extension - whatever the SQL text looks like;
- a progress handler stops the query after a fixed number of VM instructions (the same
  verdict on any machine) or a wall-clock deadline, whichever comes first;
- at most `max_rows` result rows are fetched, and strings/blobs are capped in length.
Pure: no pytest, no files, no network.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import random
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import Score, ScoringError
from pytest_distill.scoring.text import answer_text
from pytest_distill.suite.model import Example


@dataclass(frozen=True)
class SandboxLimits:
    max_steps: int = 50_000_000  # SQLite VM instructions: deterministic, unlike wall time
    timeout_s: float = 5.0  # wall-clock backstop for a loaded machine
    max_rows: int = 10_000
    max_length: int = 1_000_000  # bytes in one string or blob (randomblob(1e9) fails fast)


DEFAULT_LIMITS = SandboxLimits()
# (seed, rows per table): several small databases catch more wrong queries than one big one.
DATABASES = ((1, 30), (2, 12), (3, 60))
PROGRESS_EVERY = 1_000  # VM instructions between progress-handler calls


class QueryRejected(Exception):
    """The query broke a sandbox rule or failed to run; the message says which."""


# --- tokens ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<qident>"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><=|>=|<>|!=|==|\|\||[-+*/%<>=(),;.~&|])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string | qident | number | ident | op | other
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()

    @property
    def value(self) -> Any:
        if self.kind == "string":
            return (
                self.text[1:-1].replace("''", "'") if len(self.text) > 1 and self.text.endswith("'") else self.text[1:]
            )
        if self.kind == "number":
            try:
                return (
                    int(self.text, 0)
                    if self.text.lower().startswith("0x")
                    else (int(self.text) if re.fullmatch(r"\d+", self.text) else float(self.text))
                )
            except ValueError:
                return None
        if self.kind == "qident":
            return self.text[1:-1]
        return self.text


def tokenize(sql: str) -> list[Token]:
    """SQL tokens without whitespace and comments."""
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind is not None and kind not in ("ws", "comment"):
            tokens.append(Token(kind, match.group()))
    return tokens


# --- the model's output -------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def extract_sql(text: str) -> str:
    """The query in a model's answer: a ```sql fence is stripped, and trailing semicolons."""
    text = answer_text(text)
    fences = _FENCE.findall(text)
    if fences:
        # Prefer a fence labelled sql; otherwise the first fence.
        chosen = next((body for label, body in fences if label.lower() in ("sql", "sqlite")), fences[0][1])
        text = chosen
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def check_statement(sql: str) -> None:
    """One read-only statement (SELECT or WITH), or QueryRejected. The authorizer is the
    real guard; this gives a clear message for the common cases."""
    tokens = tokenize(sql)
    if not tokens:
        raise QueryRejected("empty query")
    if tokens[0].upper not in ("SELECT", "WITH"):
        raise QueryRejected(f"only a SELECT or WITH statement may run, got {tokens[0].text[:20]!r}")
    for index, token in enumerate(tokens):
        if token.text == ";" and any(t.text != ";" for t in tokens[index + 1 :]):
            raise QueryRejected("more than one statement")


# --- schema ------------------------------------------------------------------

_CREATE = re.compile(r"\bCREATE\s+(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW|(?:UNIQUE\s+)?INDEX)\b", re.IGNORECASE)


def schema_statements(text: str) -> list[str]:
    """The CREATE statements in a question, each ended by `;`, or by a blank line or the
    end of the text once its parentheses are balanced (schemas in prompts often lack `;`)."""
    statements: list[str] = []
    position = 0
    for match in _CREATE.finditer(text):
        if match.start() < position:
            continue
        end = _statement_end(text, match.start())
        statement = text[match.start() : end].strip().rstrip(";").strip()
        statements.append(statement + ";")
        position = end
    return statements


def _statement_end(text: str, start: int) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch in "'\"`":
            close = text.find(ch, i + 1)
            i = len(text) if close < 0 else close + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and ch == ";":
            return i + 1
        elif depth == 0 and ch == "\n" and re.match(r"\n[ \t]*\n", text[i : i + 40]):
            return i
        i += 1
    return len(text)


@dataclass(frozen=True)
class Column:
    name: str
    declared: str  # the declared type, upper case
    kind: str  # pk | fk | bool | date | datetime | int | real | text
    unique: bool = False
    notnull: bool = False
    parent: str | None = None  # the referenced table of a foreign key


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Schema:
    statements: tuple[str, ...]
    tables: tuple[Table, ...]  # parents before children

    @property
    def column_names(self) -> set[str]:
        return {c.name.lower() for t in self.tables for c in t.columns}


def _schema_authorizer(action: int, arg1: str | None, arg2: str | None, dbname: str | None, source: str | None) -> int:
    # Suite data, not model output, but it still gets no ATTACH, PRAGMA or extensions.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _new_connection(limits: SandboxLimits) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_length)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
    conn.execute("PRAGMA cache_size = -8192")  # sorts of a runaway join spill instead of growing
    return conn


def _create(statements: tuple[str, ...], limits: SandboxLimits) -> sqlite3.Connection:
    conn = _new_connection(limits)
    conn.set_authorizer(_schema_authorizer)
    try:
        for statement in statements:
            conn.execute(statement)
    except sqlite3.Error as exc:
        conn.close()
        raise ScoringError(f"the schema in the question does not run in SQLite: {exc}") from None
    conn.set_authorizer(None)
    return conn


@functools.lru_cache(maxsize=256)
def parse_schema(text: str) -> Schema:
    statements = tuple(schema_statements(text))
    if not statements:
        raise ScoringError("no CREATE TABLE statement in the question: the SQL scorer needs the schema there")
    conn = _create(statements, DEFAULT_LIMITS)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        lowered = {n.lower(): n for n in names}
        tables = []
        for name in names:
            quoted = _quote(name)
            fks = {row[3].lower(): row[2] for row in conn.execute(f"PRAGMA foreign_key_list({quoted})")}
            unique = set()
            for index in conn.execute(f"PRAGMA index_list({quoted})"):
                if index[2]:  # unique
                    cols = [r[2] for r in conn.execute(f"PRAGMA index_info({_quote(index[1])})")]
                    if len(cols) == 1:
                        unique.add(cols[0].lower())
            columns = []
            for _, col, declared, notnull, _default, pk in conn.execute(f"PRAGMA table_info({quoted})"):
                parent = fks.get(col.lower()) or _inferred_parent(col, lowered, name)
                kind = _kind(col, (declared or "").upper(), bool(pk), parent)
                columns.append(
                    Column(
                        col,
                        (declared or "").upper(),
                        kind,
                        unique=col.lower() in unique or bool(pk),
                        notnull=bool(notnull),
                        parent=lowered.get(parent.lower(), parent) if parent and kind == "fk" else None,
                    )
                )
            tables.append(Table(name, tuple(columns)))
    finally:
        conn.close()
    return Schema(statements, tuple(_parents_first(tables)))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _inferred_parent(column: str, tables: dict[str, str], own: str) -> str | None:
    """customer_id -> customers (or customer, or categories for category_id)."""
    lowered = column.lower()
    if not lowered.endswith("_id") or lowered == "id":
        return None
    stem = lowered[:-3]
    for candidate in (stem, stem + "s", stem + "es", stem[:-1] + "ies" if stem.endswith("y") else None):
        if candidate and candidate in tables and candidate != own.lower():
            return tables[candidate]
    return None


def _kind(name: str, declared: str, pk: bool, parent: str | None) -> str:
    lowered = name.lower()
    if pk and "INT" in declared:
        return "pk"
    if parent:
        return "fk"
    if "BOOL" in declared or lowered.startswith(("is_", "has_")):
        return "bool"
    if (
        "DATETIME" in declared
        or "TIMESTAMP" in declared
        or (("TEXT" in declared or not declared) and lowered.endswith(("_at", "_time", "timestamp")))
    ):
        return "datetime"
    if "DATE" in declared or (("TEXT" in declared or not declared) and (lowered.endswith(("date", "_on")))):
        return "date"
    if "INT" in declared:
        return "int"
    if any(t in declared for t in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "real"
    return "text"


def _parents_first(tables: list[Table]) -> list[Table]:
    ordered: list[Table] = []
    pending = list(tables)
    while pending:
        placed = {t.name for t in ordered}
        ready = [
            t
            for t in pending
            if all(
                c.parent is None
                or c.parent == t.name
                or c.parent in placed
                or c.parent not in {p.name for p in pending}
                for c in t.columns
            )
        ]
        if not ready:  # a cycle: keep the declared order
            ready = pending[:1]
        for table in ready:
            ordered.append(table)
            pending.remove(table)
    return ordered


# --- literals: what the queries compare columns with ------------------------

_COMPARISON = {
    "=",
    "==",
    "!=",
    "<>",
    "<",
    ">",
    "<=",
    ">=",
    "IN",
    "NOT",
    "LIKE",
    "GLOB",
    "BETWEEN",
    "AND",
    "IS",
    "-",
    "+",
    ",",
    "(",
}
_NOT_COLUMNS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "GLOB",
    "BETWEEN",
    "IS",
    "NULL",
    "AS",
    "ON",
    "JOIN",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "WITH",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "OFFSET",
    "ASC",
    "DESC",
}


@dataclass
class Literals:
    """Literals of the queries: per column (lower-cased name), and those tied to no column."""

    strings: dict[str, list[str]] = field(default_factory=dict)
    likes: dict[str, list[str]] = field(default_factory=dict)
    numbers: dict[str, list[float]] = field(default_factory=dict)
    loose_strings: list[str] = field(default_factory=list)
    nulls: set[str] = field(default_factory=set)  # columns tested with IS [NOT] NULL
    uses_now: bool = False  # DATE('now', ...): some dates must be recent

    def add(self, table: dict[str, list[Any]], column: str | None, value: Any) -> None:
        values = table.setdefault(column or "", [])
        if value not in values:
            values.append(value)


def find_literals(queries: list[str], columns: set[str]) -> Literals:
    literals = Literals()
    for sql in queries:
        tokens = tokenize(sql)
        for index, token in enumerate(tokens):
            if (
                token.upper in ("IS", "ISNULL", "NOTNULL")
                and index > 0
                and tokens[index - 1].kind in ("ident", "qident")
            ):
                literals.nulls.add(str(tokens[index - 1].value).lower())
            if token.kind == "string" and str(token.value).lower() == "now":
                literals.uses_now = True
            if token.kind not in ("string", "number"):
                continue
            column, is_argument = _column_for(tokens, index, columns)
            if is_argument:
                continue  # strftime('%Y', ...), DATE('now', '-7 days'): not data
            value = token.value
            if value is None:
                continue
            if token.kind == "number":
                if column:
                    literals.add(literals.numbers, column, value)
                continue
            like = index > 0 and tokens[index - 1].upper in ("LIKE", "GLOB")
            if column:
                literals.add(literals.likes if like else literals.strings, column, value)
            elif not like and value not in literals.loose_strings:
                literals.loose_strings.append(value)
    return literals


def _column_for(tokens: list[Token], index: int, columns: set[str]) -> tuple[str | None, bool]:
    """(the column a literal is compared with, whether the literal is a function argument)."""
    j = index - 1
    while j >= 0:
        t = tokens[j]
        if t.kind in ("string", "number") or (t.upper in _COMPARISON and t.text != "("):
            j -= 1
            continue
        if t.text == "(":
            before = tokens[j - 1] if j > 0 else None
            if before is not None and before.upper == "IN":
                j -= 1
                continue
            if before is not None and before.kind == "ident" and before.upper not in _NOT_COLUMNS:
                return None, True
            break
        if t.text == ")":  # LOWER(name) = 'x': the column inside the call
            depth, k = 0, j
            while k >= 0:
                depth += tokens[k].text == ")"
                depth -= tokens[k].text == "("
                if depth == 0:
                    break
                k -= 1
            inside = [x.value.lower() for x in tokens[k + 1 : j] if x.kind in ("ident", "qident")]
            found = [name for name in inside if name in columns]
            return (found[-1] if found else None), False
        if t.kind in ("ident", "qident") and t.upper not in _NOT_COLUMNS:
            name = str(t.value).lower()
            return (name if name in columns else None), False
        break
    # 'x' = col: look forward
    k = index + 1
    while k < len(tokens) and tokens[k].upper in ("=", "==", "!=", "<>", "<", ">", "<=", ">="):
        k += 1
        if k < len(tokens) and tokens[k].kind in ("ident", "qident"):
            name = str(tokens[k].value).lower()
            if k + 1 < len(tokens) and tokens[k + 1].text == ".":
                k += 2
                name = str(tokens[k].value).lower() if k < len(tokens) else name
            return (name if name in columns else None), False
    return None, False


# --- data --------------------------------------------------------------------

_DAY0 = dt.date(2022, 1, 1)
_DAYS = 4 * 365
_WORDS = ("North", "Blue", "Prime", "Nova", "Delta", "Cedar", "Orbit", "Maple", "Apex", "Lumen", "Harbor", "Quartz")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _like_example(pattern: str, rng: random.Random) -> str:
    out = []
    for ch in pattern:
        if ch == "%":
            out.append(rng.choice(("", rng.choice(_WORDS) + " ", " " + rng.choice(_WORDS))))
        elif ch == "_":
            out.append(rng.choice("abcxyz"))
        else:
            out.append(ch)
    return "".join(out).strip() or rng.choice(_WORDS)


def _near_dates(literal: str, rng: random.Random) -> str:
    try:
        day = dt.date.fromisoformat(literal[:10])
    except ValueError:
        return literal
    return (day + dt.timedelta(days=rng.choice((-1, 0, 0, 1, rng.randint(-40, 40))))).isoformat()


class _ColumnValues:
    """Draws the values of one column for one database."""

    def __init__(
        self,
        table: Table,
        column: Column,
        rows: int,
        literals: Literals,
        rng: random.Random,
        parent_ids: dict[str, list[int]],
    ) -> None:
        self.column = column
        self.rng = rng
        key = column.name.lower()
        self.strings = literals.strings.get(key, [])
        self.likes = literals.likes.get(key, [])
        self.numbers = [n for n in literals.numbers.get(key, []) if isinstance(n, (int, float))]
        self.loose = literals.loose_strings
        self.nullable = key in literals.nulls and not column.notnull and column.kind != "pk"
        self.uses_now = literals.uses_now
        self.rows = rows
        self.parents = parent_ids.get(column.parent or "", [])
        if column.parent == table.name:  # manager_id -> employees.id: rows of this same table
            self.parents = list(range(1, rows + 1))
        # Parents from the first three quarters only: some parents have no children
        # (LEFT JOIN ... IS NULL); each of the others gets one child first, then more at random.
        self.pool = self.parents[: max(1, (len(self.parents) * 3) // 4)] or [1]
        self.first_children = rng.sample(self.pool, len(self.pool)) if column.kind == "fk" else []
        self.distinct: list[Any] = []
        if column.kind == "int" and not self.numbers:
            low, high = _int_range(key, rows)
            population = range(low, high + 1)
            # Distinct values where the range allows: ties in ORDER BY ... LIMIT would make
            # two correct queries disagree.
            self.distinct = rng.sample(population, rows) if len(population) >= rows * 3 else []
        self.vocabulary = self._vocabulary(key)

    def _vocabulary(self, key: str) -> list[str]:
        if self.column.kind != "text":
            return []
        label = key.replace("_", " ").title().replace(" ", "")
        if self.column.unique or key in ("name", "title", "email", "full_name", "first_name", "last_name", "username"):
            return [f"{label} {i}" for i in range(1, self.rows + 1)]
        # few distinct values, so GROUP BY has groups with several members
        return [f"{label} {w}" for w in self.rng.sample(_WORDS, 5)]

    def value(self, row: int) -> Any:
        kind, rng = self.column.kind, self.rng
        if kind == "pk":
            return row
        if self.nullable and rng.random() < 0.25:
            return None
        if kind == "fk":
            return self.first_children[row - 1] if row <= len(self.first_children) else rng.choice(self.pool)
        if kind == "bool":
            return rng.randint(0, 1)
        if kind in ("date", "datetime"):
            dates = [s for s in self.strings if _DATE_RE.match(s)]
            if dates and rng.random() < 0.4:
                day = _near_dates(rng.choice(dates), rng)
            elif self.uses_now and rng.random() < 0.3:
                # The only data that depends on the day of the run: 'now' queries need it.
                day = (dt.date.today() - dt.timedelta(days=rng.randrange(60))).isoformat()
            else:
                day = (_DAY0 + dt.timedelta(days=rng.randrange(_DAYS))).isoformat()
            if kind == "datetime":
                return f"{day} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
            return day
        if kind in ("int", "real"):
            return self._number(row)
        # text
        if self.column.unique:
            # A unique column takes each literal once (a repeat would be dropped), then labels.
            planted = self.strings + self.likes
            if row <= len(planted):
                return planted[row - 1] if row <= len(self.strings) else _like_example(planted[row - 1], rng)
            return self.vocabulary[(row - 1) % len(self.vocabulary)]
        roll = rng.random()
        if self.likes and roll < 0.3:
            return _like_example(rng.choice(self.likes), rng)
        if self.strings and roll < 0.65:
            return rng.choice(self.strings)
        if self.loose and roll < 0.75:
            return rng.choice(self.loose)
        if self.vocabulary and len(self.vocabulary) == self.rows:
            return self.vocabulary[(row - 1) % len(self.vocabulary)]
        return rng.choice(self.vocabulary) if self.vocabulary else rng.choice(_WORDS)

    def _number(self, row: int) -> Any:
        rng, is_int = self.rng, self.column.kind == "int"
        if self.numbers:
            if rng.random() < 0.4:
                base = rng.choice(self.numbers)
                step = 1 if is_int else 0.5
                value = base + rng.choice((-step, 0, 0, step))
            else:
                top = max(abs(n) for n in self.numbers) * 2 + 10
                value = rng.uniform(0, top)
            return round(value) if is_int else round(float(value), 2)
        if is_int:
            if self.distinct:
                return self.distinct[row - 1]
            low, high = _int_range(self.column.name.lower(), self.rows)
            return rng.randint(low, high)
        return round(rng.uniform(1, 1000), 2)


def _int_range(name: str, rows: int) -> tuple[int, int]:
    if name.endswith("_id"):
        return 1, max(3, rows // 4)  # an unresolved reference: few values, so groups repeat
    if "year" in name:
        return 2015, 2025
    if "age" in name.split("_"):
        return 18, 90
    if any(word in name for word in ("rating", "stars", "priority", "level")):
        return 1, 5
    return 0, 1000


def _seed(seed: int, schema: Schema, literals: Literals) -> int:
    # Data depends only on the schema, the literals and the database number.
    digest = hashlib.sha256(
        repr(
            (
                seed,
                schema.statements,
                sorted(literals.strings.items()),
                sorted(literals.likes.items()),
                sorted(literals.numbers.items()),
                literals.loose_strings,
                sorted(literals.nulls),
            )
        ).encode()
    ).digest()
    return int.from_bytes(digest[:8], "big")


def build_database(
    schema: Schema, literals: Literals, seed: int, rows: int, limits: SandboxLimits = DEFAULT_LIMITS
) -> sqlite3.Connection:
    rng = random.Random(_seed(seed, schema, literals))
    conn = _create(schema.statements, limits)
    parent_ids: dict[str, list[int]] = {}
    for table in schema.tables:
        # Twice as many children as parents, so GROUP BY ... HAVING COUNT(*) > n has groups to keep.
        count = rows * 2 if any(c.kind == "fk" and c.parent != table.name for c in table.columns) else rows
        generators = [_ColumnValues(table, c, count, literals, rng, parent_ids) for c in table.columns]
        names = ", ".join(_quote(c.name) for c in table.columns)
        marks = ", ".join("?" for _ in table.columns)
        data = [tuple(g.value(row) for g in generators) for row in range(1, count + 1)]
        try:
            # OR IGNORE: a row that breaks a UNIQUE or CHECK constraint is dropped, not fatal.
            conn.executemany(f"INSERT OR IGNORE INTO {_quote(table.name)} ({names}) VALUES ({marks})", data)
        except sqlite3.Error as exc:
            conn.close()
            raise ScoringError(f"cannot fill table {table.name} with generated rows: {exc}") from None
        pk = next((c.name for c in table.columns if c.kind == "pk"), None)
        key = _quote(pk) if pk else "rowid"
        ids = [r[0] for r in conn.execute(f"SELECT {key} FROM {_quote(table.name)} ORDER BY {key}")]
        parent_ids[table.name] = ids
    conn.execute("PRAGMA query_only = ON")
    return conn


# --- running -----------------------------------------------------------------

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}
_ACTION_NAMES = {
    getattr(sqlite3, n): n[7:].lower().replace("_", " ")
    for n in dir(sqlite3)
    if n.startswith("SQLITE_")
    and not n.startswith("SQLITE_LIMIT")
    and n.isupper()
    and n[7:]
    in (
        "INSERT",
        "UPDATE",
        "DELETE",
        "ATTACH",
        "DETACH",
        "PRAGMA",
        "TRANSACTION",
        "SAVEPOINT",
        "ALTER_TABLE",
        "ANALYZE",
        "REINDEX",
        "CREATE_TABLE",
        "CREATE_TEMP_TABLE",
        "CREATE_VIEW",
        "CREATE_TEMP_VIEW",
        "CREATE_INDEX",
        "CREATE_TEMP_INDEX",
        "CREATE_TRIGGER",
        "CREATE_TEMP_TRIGGER",
        "DROP_TABLE",
        "DROP_TEMP_TABLE",
        "DROP_VIEW",
        "DROP_TEMP_VIEW",
        "DROP_INDEX",
        "DROP_TEMP_INDEX",
        "DROP_TRIGGER",
        "DROP_TEMP_TRIGGER",
        "CREATE_VTABLE",
        "DROP_VTABLE",
    )
}


class _Guard:
    """Authorizer and progress handler of one query; remembers why it stopped it."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.deadline = time.monotonic() + limits.timeout_s
        self.denied: str | None = None
        self.stopped: str | None = None

    def authorize(self, action: int, arg1: str | None, arg2: str | None, dbname: str | None, source: str | None) -> int:
        if action in _ALLOWED:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
                self.denied = f"function {arg2}()"
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        self.denied = self.denied or _ACTION_NAMES.get(action, f"action {action}") + (f" {arg1}" if arg1 else "")
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        self.steps += PROGRESS_EVERY
        if self.steps > self.limits.max_steps:
            self.stopped = f"stopped after {self.limits.max_steps:,} SQLite steps (runaway query)"
            return 1
        if time.monotonic() > self.deadline:
            self.stopped = f"stopped after {self.limits.timeout_s:g}s (runaway query)"
            return 1
        return 0


def run_query(
    conn: sqlite3.Connection, sql: str, limits: SandboxLimits = DEFAULT_LIMITS
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only query in the sandbox: (column names, rows) or QueryRejected."""
    check_statement(sql)
    guard = _Guard(limits)
    conn.set_authorizer(guard.authorize)
    conn.set_progress_handler(guard.progress, PROGRESS_EVERY)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(limits.max_rows + 1)
        if len(rows) > limits.max_rows:
            raise QueryRejected(f"more than {limits.max_rows:,} rows")
        columns = [d[0] for d in cursor.description or ()]
        cursor.close()
    except (sqlite3.Error, sqlite3.Warning, OverflowError, MemoryError) as exc:
        if guard.stopped:
            raise QueryRejected(guard.stopped) from None
        if guard.denied:
            raise QueryRejected(f"not allowed: {guard.denied} (only reads run)") from None
        raise QueryRejected(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
    if guard.denied:  # belt and braces: a denial always fails the prepare, so never reached
        raise QueryRejected(f"not allowed: {guard.denied} (only reads run)")
    return columns, rows


# --- comparing ---------------------------------------------------------------


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return float(f"{value:.9g}")  # AVG vs SUM/COUNT may differ in the last bits
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        (v is None, type(v).__name__ if not isinstance(v, (int, float)) else "num", v if v is not None else 0)
        for v in row
    )


def is_ordered(sql: str) -> bool:
    """Whether the query orders its final rows (an ORDER BY outside any parentheses)."""
    depth = 0
    for token in tokenize(sql):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif depth == 0 and token.upper == "ORDER":
            return True
    return False


def _same_rows(expected: list[tuple[Any, ...]], got: list[tuple[Any, ...]], ordered: bool) -> bool:
    if ordered:
        return expected == got
    return Counter(expected) == Counter(got)


def compare_results(
    expected: list[list[tuple[Any, ...]]], got: list[list[tuple[Any, ...]]], ordered: bool
) -> tuple[bool, str, bool]:
    """(equivalent, what differs, columns permuted) over all databases."""
    exp = [[tuple(_normal(v) for v in row) for row in rows] for rows in expected]
    hyp = [[tuple(_normal(v) for v in row) for row in rows] for rows in got]
    if all(_same_rows(e, h, ordered) for e, h in zip(exp, hyp)):
        return True, "", False
    widths = {len(r) for rows in exp + hyp for r in rows}
    if len(widths) == 1:
        width = widths.pop()
        if width <= 6:
            for perm in itertools.permutations(range(width)):
                if all(_same_rows(e, [tuple(r[i] for i in perm) for r in h], ordered) for e, h in zip(exp, hyp)):
                    return True, "", perm != tuple(range(width))
    for number, (e, h) in enumerate(zip(exp, hyp), start=1):
        if _same_rows(e, h, ordered):
            continue
        if e and h and len(e[0]) != len(h[0]):
            return False, f"{len(h[0])} columns instead of {len(e[0])}", False
        if len(e) != len(h):
            return False, f"{len(h)} rows instead of {len(e)} on generated database {number}", False
        if ordered and Counter(e) == Counter(h):
            return False, f"the right rows in a different order on generated database {number}", False
        missing = (Counter(e) - Counter(h)) or None
        sample = next(iter(missing)) if missing else None
        return (
            False,
            (
                f"different rows on generated database {number}"
                + (f", e.g. {_short(sample)} is missing" if sample is not None else "")
            ),
            False,
        )
    return False, "different results", False


def _short(row: tuple[Any, ...]) -> str:
    text = repr(row)
    return text if len(text) <= 80 else text[:77] + "..."


# --- the scorer --------------------------------------------------------------


def execution_match(schema_text: str, reference: str, predicted: str, limits: SandboxLimits = DEFAULT_LIMITS) -> Score:
    """Run both queries on the generated databases and compare. A bad reference or schema
    raises ScoringError (the data is wrong, not the model)."""
    reference = extract_sql(reference)
    schema = parse_schema(schema_text)
    literals = find_literals([reference, predicted], schema.column_names)
    ordered = is_ordered(reference)
    expected, got = [], []
    failure: str | None = None
    for seed, rows in DATABASES:
        conn = build_database(schema, literals, seed, rows, limits)
        try:
            try:
                expected.append(run_query(conn, reference, limits)[1])
            except QueryRejected as exc:
                raise ScoringError(f"the reference query does not run: {exc}") from None
            try:
                got.append(run_query(conn, predicted, limits)[1])
            except QueryRejected as exc:
                failure = str(exc)
                break
        finally:
            conn.close()
    details: dict[str, Any] = {
        "sql": predicted,
        "ordered": ordered,
        "databases": len(DATABASES),
        "reference_rows": [len(r) for r in expected],
    }
    shown = predicted.replace("\n", " ")
    shown = shown if len(shown) <= 160 else shown[:157] + "..."
    if failure is not None:
        return Score(
            passed=False,
            value=0.0,
            explanation=f"predicted query failed: {failure}: {shown!r}",
            expected=reference,
            got=predicted,
            details={**details, "rejected": failure},
        )
    same, why, permuted = compare_results(expected, got, ordered)
    if same:
        note = " (columns in another order)" if permuted else ""
        return Score(
            passed=True,
            value=1.0,
            details={**details, "columns_permuted": permuted},
            explanation=f"same results as the reference on {len(DATABASES)} generated databases{note}",
            expected=reference,
            got=predicted,
        )
    return Score(
        passed=False,
        value=0.0,
        explanation=f"not equivalent to the reference: {why}: {shown!r}",
        expected=reference,
        got=predicted,
        details=details,
    )


def score_sql_execution(example: Example, completion: Completion) -> Score:
    if not isinstance(example.answer, str):
        raise ScoringError("a sql_execution reference must be a SQL string")
    question = example.question if isinstance(example.question, str) else str(example.question)
    schema_text = question + ("\n\n" + example.context if example.context else "")
    return execution_match(schema_text, example.answer, extract_sql(completion.text))
