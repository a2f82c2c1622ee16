"""CI shards: which examples a `--distill-shard K/N` run evaluates.

An example's shard is fixed by a sha256 of its suite folder and id, so every model and
repetition of one example falls in the same shard (paired tests and flip counts stay
whole), and every runner computes the same split with no coordination.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pytest_distill.core.errors import ConfigError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based: K of K/N
    total: int  # N

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"

    def holds(self, suite_path: str, example_id: str) -> bool:
        return shard_of(suite_path, example_id, self.total) == self.index


def parse_shard(spec: str) -> Shard:
    """'2/3' -> Shard(2, 3); anything else is a one-line ConfigError."""
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ConfigError(f"--distill-shard takes K/N (e.g. 2/3), got {spec!r}")
    index, total = int(match[1]), int(match[2])
    if total < 1 or not 1 <= index <= total:
        raise ConfigError(f"--distill-shard {spec}: K must be between 1 and N, and N at least 1")
    return Shard(index, total)


def shard_of(suite_path: str, example_id: str, total: int) -> int:
    """The 1-based shard of an example; suite_path is the suite folder relative to the rootdir,
    with '/' separators, so that every runner of the same checkout agrees."""
    digest = hashlib.sha256(f"{suite_path}\0{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total + 1
