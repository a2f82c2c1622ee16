"""The response cache: answers on disk by request key (engine.request_key).

One sqlite3 file in WAL mode. Why sqlite: pytest -n runs several processes that read and
write at once, and a run can be killed mid-write; sqlite's transactions make every write
all-or-nothing and WAL lets readers go on while one process writes, so no process ever
reads a half-written entry. Each value also carries its SHA-256, checked on every read, so
a damaged file gives a miss, never a wrong answer.

Modes:
  off        no cache
  readwrite  serve hits, store new answers (the default when a cache directory is given)
  read       serve hits, store nothing (misses go to the model and are not kept)
  write      never serve, always ask the model, store (refresh) every answer
  replay     serve hits; a miss is an error, never a request (offline CI, no keys needed)

A bad file fails safe (docs/cache.md). Opening checks it (`PRAGMA quick_check` and the
`responses` table's columns): in readwrite and write mode a file that is not a cache is
moved aside (`responses.sqlite3.corrupt-<time>`) and a new one is made, with one warning;
in read and replay mode, which must not lose what they read, it is one usage error naming
the file. A sqlite error later in the run turns the cache off for the rest of the run,
with one warning: items are then answered by the model (in replay mode: errors).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion

MODES = ("off", "readwrite", "read", "write", "replay")
DEFAULT_MODE = "readwrite"
DEFAULT_DIR = ".distill-cache"
FILE_NAME = "responses.sqlite3"

COLUMNS = ("key", "value", "sha256", "created_at")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class CacheWarning(UserWarning):
    """The response cache was damaged or failed; the run goes on without (part of) it."""


class BadCacheFile(Exception):
    """The file is not a response cache we can use (not SQLite, damaged, another schema)."""


def _warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=3)


class SqliteCache:
    """Implements engine.ResponseCache."""

    def __init__(self, directory: Path | str, mode: str = DEFAULT_MODE, *, warn: Callable[[str], None] = _warn) -> None:
        if mode not in MODES or mode == "off":
            raise ConfigError(f"cache mode must be one of {', '.join(m for m in MODES if m != 'off')}, got '{mode}'")
        self.mode = mode
        self.replay_only = mode == "replay"
        self.reads = mode in ("readwrite", "read", "replay")
        self.writes = mode in ("readwrite", "write")
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.problem: str | None = None  # why the cache turned itself off during the run
        self._warn = warn
        self._lock = threading.Lock()  # one connection, used from the engine's worker threads
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._conn = self._open_checked()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the response cache {self.path}: {exc}") from None

    def _open_checked(self) -> sqlite3.Connection:
        checked = _identity(self.path)
        try:
            return self._open()
        except BadCacheFile as exc:
            if not self.writes:  # read/replay: what the run needs is in that file; never discard it
                raise ConfigError(
                    f"the response cache {self.path} is not usable ({exc}); delete it (and any "
                    f"{FILE_NAME}-wal/-shm beside it) or use another --distill-cache DIR"
                ) from None
            # Under xdist the controller opens (and repairs) first; a second run starting at
            # the same moment may have repaired it already: never move a file we did not check.
            if _identity(self.path) == checked:
                moved = self._move_aside()
                self._warn(
                    f"pytest-distill: the response cache {self.path} was not usable ({exc}); "
                    f"moved it to {moved.name} and started an empty one"
                )
            return self._open()

    def _open(self) -> sqlite3.Connection:
        # timeout = sqlite's busy wait: other xdist workers may hold the write lock.
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT below.
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise BadCacheFile(f"damaged: {problems[0]}")
            columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(responses)"))
            if columns and columns != COLUMNS:
                raise BadCacheFile(
                    f"its responses table has the columns ({', '.join(columns)}), not ({', '.join(COLUMNS)})"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable commits, no corruption on a kill
            conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"...
            conn.close()
            raise BadCacheFile(str(exc)) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}")
        self.path.rename(moved)
        for suffix in ("-wal", "-shm"):  # they belong to the old file
            with contextlib.suppress(FileNotFoundError):
                self.path.with_name(FILE_NAME + suffix).rename(moved.with_name(moved.name + suffix))
        return moved

    def _turn_off(self, exc: Exception) -> None:
        """A storage failure mid-run: no more reads or writes, one warning."""
        self.reads = self.writes = False
        if self.problem is None:
            self.problem = f"{type(exc).__name__}: {exc}"
            self._warn(
                f"pytest-distill: the response cache {self.path} failed ({self.problem}); "
                "it is off for the rest of this run"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.reads:
            return None
        try:
            with self._lock:
                row = self._conn.execute("SELECT value, sha256 FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._turn_off(exc)
            return None
        value = self._valid(row)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    @staticmethod
    def _valid(row: tuple[str, str] | None) -> dict[str, Any] | None:
        if row is None or _digest(row[0]) != row[1]:
            return None
        try:
            value = json.loads(row[0])
            Completion.from_dict(value)  # must still read as an answer
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not self.writes:
            return
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        try:
            with self._lock:
                self._write(key, text)
        except sqlite3.Error as exc:
            self._turn_off(exc)
            return
        self.stored += 1

    def _write(self, key: str, text: str) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, value, sha256, created_at) VALUES (?, ?, ?, ?)",
                (key, text, _digest(text), time.time()),
            )
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def describe(self) -> str:
        off = f" (off since: {self.problem})" if self.problem else ""
        return (
            f"{self.mode} cache at {self.path}: {self.hits} hit(s), {self.misses} miss(es), {self.stored} stored{off}"
        )


def open_cache(
    directory: str | Path | None, mode: str | None, rootdir: Path, warn: Callable[[str], None] = _warn
) -> SqliteCache | None:
    """The cache the options ask for: a directory alone means readwrite; a mode alone uses
    .distill-cache at the rootdir; neither (or mode off) means no cache."""
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--distill-cache-mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "off" or (directory is None and mode is None):
        return None
    path = Path(directory) if directory else Path(DEFAULT_DIR)
    if not path.is_absolute():
        path = rootdir / path
    return SqliteCache(path, mode or DEFAULT_MODE, warn=warn)
