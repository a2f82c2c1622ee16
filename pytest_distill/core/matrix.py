"""The suite x model matrix of a run with more than one suite and more than one model, and
the benchmark's headline sentence computed from it.

Pure (no pytest, no I/O). Built from the per-suite comparisons (core.compare), so the
best cell of a row, and which cells tie with it, are the ranking's and the exact McNemar
test's decisions, never overlapping intervals:

- a cell is "best" (rank 1 of its suite; equal rates are ordered by the ranking's
  timing-independent tie rule: listed price, then name), "tie" (not significantly
  different from the best at alpha), "loss" (significantly worse), or "none" (the model
  scored nothing on that suite: every answer an error);
- each model's tally counts its wins (best cells), ties and losses;
- frontier models are the API-priced entries (not self-hosted, with an input price); the
  headline takes, per suite, the best frontier model under FRONTIER_MAX_INPUT_PRICE
  (USD per million input tokens) and counts the suites where a non-frontier model is not
  significantly worse than it (the same exact McNemar test on the examples both scored).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_distill.core.compare import DEFAULT_ALPHA, SuiteComparison, example_outcomes, paired_test
from pytest_distill.core.cost import Priced
from pytest_distill.core.gates import gated_rate
from pytest_distill.core.records import Record, Summary

FRONTIER_MAX_INPUT_PRICE = 1.0  # USD per million input tokens: "under $1/MTok input"

BEST, TIE, LOSS, NONE = "best", "tie", "loss", "none"


@dataclass(frozen=True)
class Cell:
    suite: str
    model: str
    rate: float | None  # the gated rate: mean over repetitions when repeated
    std: float | None  # std over repetitions; None when measured once
    repetitions: int
    per_million: float | None  # USD per million requests
    status: str  # BEST, TIE, LOSS or NONE
    p_value: float | None  # exact McNemar against the row's best; None for the best itself


@dataclass(frozen=True)
class Tally:
    model: str
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class Headline:
    """One non-frontier model against the best frontier model under the price cap, per suite."""

    model: str
    matched: tuple[str, ...]  # suites where it is not significantly worse
    compared: tuple[str, ...]  # suites where both it and a capped frontier model have a rate
    against: tuple[tuple[str, str], ...]  # (suite, the frontier model it was compared with)

    @property
    def text(self) -> str:
        return (
            f"{self.model} matches or beats the best frontier model under "
            f"${FRONTIER_MAX_INPUT_PRICE:g}/MTok input on {len(self.matched)}/{len(self.compared)} suites"
        )


@dataclass(frozen=True)
class Matrix:
    suites: tuple[str, ...]
    models: tuple[str, ...]
    cells: tuple[Cell, ...]
    tallies: tuple[Tally, ...]
    headlines: tuple[Headline, ...]  # the best first (most suites matched)
    alpha: float

    def cell(self, suite: str, model: str) -> Cell | None:
        return next((c for c in self.cells if c.suite == suite and c.model == model), None)

    @property
    def headline(self) -> str | None:
        return self.headlines[0].text if self.headlines else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["headline"] = self.headline
        for h, raw in zip(self.headlines, data["headlines"], strict=True):
            raw["text"] = h.text
        return data


def is_frontier(entry: Priced | None) -> bool:
    """An API-priced entry: not self-hosted, with a listed input price."""
    return entry is not None and not entry.self_hosted and entry.price_input is not None


def build_matrix(
    summaries: Sequence[Summary],
    records: Iterable[Record],
    comparisons: Sequence[SuiteComparison],
    per_million: Mapping[tuple[str, str], float | None],
    entries: Mapping[str, Priced],
    models: Sequence[str] = (),
) -> Matrix | None:
    """The matrix, or None unless the run has more than one suite and more than one model.
    `models`: the column order wanted (e.g. as given on the command line); models not in it
    follow by name."""
    suites = sorted({s.suite for s in summaries})
    present = {s.model for s in summaries}
    columns = [m for m in dict.fromkeys(models) if m in present] + sorted(present - set(models))
    if len(suites) < 2 or len(columns) < 2:
        return None
    by_key = {(s.suite, s.model): s for s in summaries}
    compared = {c.suite: c for c in comparisons}
    alpha = comparisons[0].alpha if comparisons else DEFAULT_ALPHA
    outcomes: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        outcomes[(r.suite, r.model)].append(r)
    cells = []
    for suite in suites:
        ranks = {r.model: r for r in compared[suite].ranking} if suite in compared else {}
        for model in columns:
            s = by_key.get((suite, model))
            if s is None:
                continue
            rate = gated_rate(s)
            ranked = ranks.get(model)
            if rate is None:
                status = NONE
            elif ranked is None or ranked.rank == 1:  # a suite with one model: it is the best
                status = BEST
            else:
                status = LOSS if ranked.significant else TIE
            cells.append(
                Cell(
                    suite=suite,
                    model=model,
                    rate=rate,
                    std=s.rep_std if s.repetitions > 1 else None,
                    repetitions=s.repetitions,
                    per_million=per_million.get((suite, model)),
                    status=status,
                    p_value=None if ranked is None else ranked.p_value,
                )
            )
    tallies = tuple(
        Tally(
            model=m,
            wins=sum(c.model == m and c.status == BEST for c in cells),
            ties=sum(c.model == m and c.status == TIE for c in cells),
            losses=sum(c.model == m and c.status == LOSS for c in cells),
        )
        for m in columns
    )
    headlines = _headlines(suites, columns, by_key, compared, outcomes, entries, alpha)
    return Matrix(
        suites=tuple(suites),
        models=tuple(columns),
        cells=tuple(cells),
        tallies=tallies,
        headlines=headlines,
        alpha=alpha,
    )


def _headlines(
    suites: list[str],
    columns: list[str],
    by_key: Mapping[tuple[str, str], Summary],
    compared: Mapping[str, SuiteComparison],
    outcomes: Mapping[tuple[str, str], list[Record]],
    entries: Mapping[str, Priced],
    alpha: float,
) -> tuple[Headline, ...]:
    capped = [
        m for m in columns if is_frontier(entries.get(m)) and (entries[m].price_input or 0.0) < FRONTIER_MAX_INPUT_PRICE
    ]
    subjects = [m for m in columns if not is_frontier(entries.get(m))]
    best_capped: dict[str, str] = {}
    for suite in suites:
        if suite not in compared:
            continue
        # The ranking's order: rate, then the timing-independent tie rule.
        ranked = [r.model for r in compared[suite].ranking if r.model in capped and r.rate is not None]
        if ranked:
            best_capped[suite] = ranked[0]
    headlines = []
    for model in subjects:
        matched, seen, against = [], [], []
        for suite, frontier in best_capped.items():
            mine = by_key.get((suite, model))
            rate, theirs = (gated_rate(mine) if mine else None), gated_rate(by_key[(suite, frontier)])
            if rate is None or theirs is None:
                continue
            seen.append(suite)
            against.append((suite, frontier))
            *_, p = paired_test(
                example_outcomes(outcomes[(suite, frontier)]), example_outcomes(outcomes[(suite, model)])
            )
            if rate >= theirs or p >= alpha:
                matched.append(suite)
        if seen:
            headlines.append(
                Headline(model=model, matched=tuple(matched), compared=tuple(seen), against=tuple(against))
            )
    # The most suites matched first; then the most compared; then the column order.
    order = {m: i for i, m in enumerate(columns)}
    headlines.sort(key=lambda h: (-len(h.matched), -len(h.compared), order[h.model]))
    return tuple(headlines)
