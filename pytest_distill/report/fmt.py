"""The one set of number formatters every report uses: percent, milliseconds, money, counts.

Compact (no spaces inside a value): terminal tables are split on whitespace by tools and tests.
"""

from __future__ import annotations


def percent(rate: float | None, digits: int = 1) -> str:
    """0.1234 -> '12.3%'; None -> '-'."""
    return "-" if rate is None else f"{100 * rate:.{digits}f}%"


def ms(seconds: float | None) -> str:
    """A latency: '123ms' under 10 s, else '12.3s'; None -> '-'."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def money(value: float | None) -> str:
    """USD with as many digits as the size calls for: '$0', '$1,234', '$1.50', '$0.0012'."""
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:.2f}"
    return f"${value:.2g}"


def count(value: float | None, digits: int = 0) -> str:
    """A count or mean count (tokens): '12'; None -> '-'."""
    return "-" if value is None else f"{value:.{digits}f}"


def thousands(value: int) -> str:
    """A whole count with thousands separators: '3,080'."""
    return f"{value:,}"


def sample_text(suite: str, sample: dict[str, object]) -> str:
    """`banking77: n=200 of 3,080 examples, stratified by label (--sample-seed 0)`: what a sampled row stands for."""
    how = "a sample stratified by label" if sample["stratified"] else "a random sample"
    return (
        f"{suite}: n={thousands(int(str(sample['size'])))} of {thousands(int(str(sample['total'])))} examples, "
        f"{how} (--sample-seed {sample['seed']})"
    )


def gib(value: int | None) -> str:
    """Bytes as GiB: '1.25GiB'."""
    return "-" if value is None else f"{value / 2**30:.2f}GiB"
