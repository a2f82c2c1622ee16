"""--sample N: which examples of a suite a sampled run evaluates.

The choice depends only on the seed, the suite's name and its rows, never on the machine,
the process or Python's per-process hash(): serial runs, every xdist worker and every CI
shard pick the same positions. A classification suite is sampled by label (each class in
proportion, at least one each when N allows), any other suite uniformly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_SEED = 0


@dataclass(frozen=True)
class SuiteSample:
    """What a sampled suite's rows stand for: `size` of its `total` examples (results.json's suites[].sample)."""

    size: int
    total: int
    seed: int
    stratified: bool  # by label (classification suites)

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "total": self.total, "seed": self.seed, "stratified": self.stratified}


def rng_for(seed: int, suite_name: str) -> random.Random:
    """A generator seeded from text: random.Random hashes a str seed with SHA-512, the same everywhere."""
    return random.Random(f"{seed}:{suite_name}")


def sample_positions(
    count: int, size: int, seed: int, suite_name: str, labels: Sequence[Hashable] | None = None
) -> list[int]:
    """The 0-based positions (ascending) of a sample of `size` of `count` rows. With `labels` (one
    per row), stratified: largest-remainder allocation per class, then a seeded choice within it."""
    if size < 1:
        raise ValueError(f"a sample has at least one row, got {size}")
    if size >= count:
        return list(range(count))
    rng = rng_for(seed, suite_name)
    if labels is None:
        return sorted(rng.sample(range(count), size))
    if len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} rows")
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    classes = sorted(by_label, key=str)  # a fixed order for the generator's draws
    quotas = allocate({c: len(by_label[c]) for c in classes}, size, rng)
    chosen: list[int] = []
    for label in classes:
        chosen += rng.sample(by_label[label], quotas[label])
    return sorted(chosen)


def allocate(counts: dict[Hashable, int], size: int, rng: random.Random) -> dict[Hashable, int]:
    """Rows per class, summing to `size` (< the total): one each first when size allows, the rest
    in proportion to what each class has left, by largest remainder (ties: a seeded order)."""
    classes = list(counts)
    base = dict.fromkeys(classes, 1 if size >= len(classes) else 0)
    left = {c: counts[c] - base[c] for c in classes}
    rest = size - sum(base.values())
    pool = sum(left.values())
    exact = {c: Fraction(rest * left[c], pool) if pool else Fraction(0) for c in classes}
    quotas = {c: base[c] + int(exact[c]) for c in classes}
    tie = {c: i for i, c in enumerate(rng.sample(classes, len(classes)))}
    by_remainder = sorted(classes, key=lambda c: (-(exact[c] - int(exact[c])), tie[c]))
    for c in by_remainder[: size - sum(quotas.values())]:
        quotas[c] += 1
    return quotas
