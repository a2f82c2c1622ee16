"""Per-class figures of classification suites: the most frequent confusions, and each
label's precision, recall and F1 (with support), from the records alone.

A record is a classification answer when its scorer is exact_match. Its answer is read
back as a label the way the scorer compares: case, surrounding space and punctuation
don't count; an answer that is none of the suite's labels is kept as given.
"""

from __future__ import annotations

import string
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_distill.core.records import MISS, PASS, Record

CLASSIFICATION_SCORER = "exact_match"
TOP_CONFUSIONS = 5
_EDGE = string.punctuation + string.whitespace
_SHOWN = 60  # characters of an answer that is none of the labels


@dataclass(frozen=True)
class Confusion:
    expected: str
    got: str
    count: int

    def to_dict(self) -> dict[str, object]:
        return {"expected": self.expected, "got": self.got, "count": self.count}


@dataclass(frozen=True)
class ClassMetrics:
    label: str
    support: int  # examples whose expected label this is
    predicted: int  # answers naming this label
    precision: float | None  # None: never predicted
    recall: float | None  # None: no example of it
    f1: float | None


def _key(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(first.strip(_EDGE).split()).casefold()


def by_suite_model(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    """The scored classification records (pass or miss), per (suite, model)."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        if r.scorer == CLASSIFICATION_SCORER and r.outcome in (PASS, MISS):
            groups[(r.suite, r.model)].append(r)
    return dict(sorted(groups.items()))


def pairs(records: Iterable[Record]) -> list[tuple[str, str]]:
    """(expected, predicted label) per record; a passed record predicted its expected label."""
    records = list(records)
    labels = {_key(r.expected): r.expected for r in records}
    out = []
    for r in records:
        if r.outcome == PASS:
            out.append((r.expected, r.expected))
            continue
        got = labels.get(_key(r.output))
        if got is None:
            shown = " ".join(r.output.split())
            got = shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"
        out.append((r.expected, got))
    return out


def confusions(records: Iterable[Record], top: int = TOP_CONFUSIONS) -> list[Confusion]:
    """The most frequent (expected → got) mistakes, most frequent first (ties by label)."""
    counted = Counter((e, g) for e, g in pairs(records) if e != g)
    ordered = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    return [Confusion(e, g, n) for (e, g), n in ordered[:top]]


def class_metrics(records: Iterable[Record]) -> list[ClassMetrics]:
    """Precision, recall and F1 of every expected label, in label order."""
    found = pairs(records)
    support = Counter(e for e, _ in found)
    predicted = Counter(g for _, g in found)
    correct = Counter(e for e, g in found if e == g)
    metrics = []
    for label in sorted(support):
        p = correct[label] / predicted[label] if predicted[label] else None
        r = correct[label] / support[label]
        f1 = 2 * p * r / (p + r) if p is not None and p + r > 0 else 0.0
        metrics.append(ClassMetrics(label, support[label], predicted[label], p, r, f1))
    return metrics


def macro_f1(metrics: Iterable[ClassMetrics]) -> float | None:
    """The unweighted mean F1 over the labels (a never-predicted label counts 0)."""
    values = [m.f1 or 0.0 for m in metrics]
    return sum(values) / len(values) if values else None
