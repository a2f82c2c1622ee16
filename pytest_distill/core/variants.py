"""Serving variants side by side: two entries on the same weights (same provider and model)
that differ in serving settings (dtype, fp8, max_num_seqs, any serve_args).

"smol-fp8 vs smol-bf16: +15.0% RPS, -44.0% GPU memory, Δ accuracy +0.0 pp (p=1)": the
throughput and memory from each one's serving measurement, the accuracy from the items both
answered, with the exact McNemar test on those pairs (core.compare.paired_test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pytest_distill.core.compare import example_outcomes, paired_test
from pytest_distill.core.records import Record
from pytest_distill.core.serving import ServingMeasurement


@dataclass(frozen=True)
class VariantComparison:
    suite: str | None  # None: no evaluation in the run (serving figures only)
    base: str
    variant: str
    rps_change: float | None  # variant / base - 1
    memory_change: float | None
    memory_kind: str  # "GPU memory" when both have it, else "server RSS"
    cost_per_million_base: float | None
    cost_per_million_variant: float | None
    shared: int = 0  # examples both answered (pass or miss)
    accuracy_delta_pp: float | None = None  # variant - base, over the shared examples
    p_value: float | None = None

    def text(self) -> str:
        parts = [f"{self.variant} vs {self.base}" + (f" ({self.suite})" if self.suite else "") + ":"]
        figures = []
        if self.rps_change is not None:
            figures.append(f"{self.rps_change * 100:+.1f}% RPS")
        if self.memory_change is not None:
            figures.append(f"{self.memory_change * 100:+.1f}% {self.memory_kind}")
        if self.accuracy_delta_pp is not None:
            p = "" if self.p_value is None else f" (p={self.p_value:.3g}, {self.shared} paired examples)"
            figures.append(f"Δ accuracy {self.accuracy_delta_pp:+.1f} pp{p}")
        return " ".join(parts) + " " + (", ".join(figures) if figures else "no figures to compare")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def variant_pairs(weights: Mapping[str, tuple[str, str]], fingerprints: Mapping[str, str]) -> list[tuple[str, str]]:
    """(base, variant) for every two models on the same weights with other serving settings;
    the base is the first by name."""
    names = sorted(weights)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if weights[a] == weights[b] and fingerprints.get(a) != fingerprints.get(b)
    ]


def _change(base: float | None, variant: float | None) -> float | None:
    return None if not base or variant is None else variant / base - 1


def compare_variants(
    pairs: Iterable[tuple[str, str]], serving: Mapping[str, ServingMeasurement], records: Iterable[Record]
) -> list[VariantComparison]:
    """One comparison per pair and suite both were evaluated on (or one per pair without records)."""
    by_key: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        by_key.setdefault((r.suite, r.model), []).append(r)
    suites = sorted({suite for suite, _ in by_key})
    out = []
    for base, variant in pairs:
        a, b = serving.get(base), serving.get(variant)
        gpu = a is not None and b is not None and bool(a.gpu_memory_mib) and bool(b.gpu_memory_mib)
        memory_a = (a.gpu_memory_mib if gpu else a.server_rss_bytes) if a is not None else None
        memory_b = (b.gpu_memory_mib if gpu else b.server_rss_bytes) if b is not None else None
        common: dict[str, Any] = {
            "base": base,
            "variant": variant,
            "rps_change": _change(a.requests_per_s if a else None, b.requests_per_s if b else None),
            "memory_change": _change(memory_a, memory_b),
            "memory_kind": "GPU memory" if gpu else "server RSS",
            "cost_per_million_base": a.cost_per_million if a else None,
            "cost_per_million_variant": b.cost_per_million if b else None,
        }
        evaluated = [s for s in suites if (s, base) in by_key and (s, variant) in by_key]
        if not evaluated:
            out.append(VariantComparison(suite=None, **common))
            continue
        for suite in evaluated:
            outcomes_a = example_outcomes(by_key[(suite, base)])
            outcomes_b = example_outcomes(by_key[(suite, variant)])
            shared, a_only, b_only, p = paired_test(outcomes_a, outcomes_b)
            delta = (b_only - a_only) / shared * 100 if shared else None
            out.append(
                VariantComparison(
                    suite=suite, shared=shared, accuracy_delta_pp=delta, p_value=p if shared else None, **common
                )
            )
    return out
