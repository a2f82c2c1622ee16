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
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion

MODES = ("off", "readwrite", "read", "write", "replay")
DEFAULT_MODE = "readwrite"
DEFAULT_DIR = ".distill-cache"
FILE_NAME = "responses.sqlite3"

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


class SqliteCache:
    """Implements engine.ResponseCache."""

    def __init__(self, directory: Path | str, mode: str = DEFAULT_MODE) -> None:
        if mode not in MODES or mode == "off":
            raise ConfigError(f"cache mode must be one of {', '.join(m for m in MODES if m != 'off')}, got '{mode}'")
        self.mode = mode
        self.replay_only = mode == "replay"
        self.reads = mode in ("readwrite", "read", "replay")
        self.writes = mode in ("readwrite", "write")
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self.stored = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / FILE_NAME
            # timeout = sqlite's busy wait: other xdist workers may hold the write lock.
            # isolation_level=None: transactions are the explicit BEGIN/COMMIT below.
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable commits, no corruption on a kill
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the response cache in {self.directory}: {exc}") from None
        self._lock = threading.Lock()  # one connection, used from the engine's worker threads

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.reads:
            return None
        with self._lock:
            row = self._conn.execute("SELECT value, sha256 FROM responses WHERE key = ?", (key,)).fetchone()
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
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, sha256, created_at) VALUES (?, ?, ?, ?)",
                    (key, text, _digest(text), time.time()),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self.stored += 1

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def describe(self) -> str:
        return f"{self.mode} cache at {self.path}: {self.hits} hit(s), {self.misses} miss(es), {self.stored} stored"


def open_cache(directory: str | Path | None, mode: str | None, rootdir: Path) -> SqliteCache | None:
    """The cache the options ask for: a directory alone means readwrite; a mode alone uses
    .distill-cache at the rootdir; neither (or mode off) means no cache."""
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--distill-cache-mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "off" or (directory is None and mode is None):
        return None
    path = Path(directory) if directory else Path(DEFAULT_DIR)
    if not path.is_absolute():
        path = rootdir / path
    return SqliteCache(path, mode or DEFAULT_MODE)
