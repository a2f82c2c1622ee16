"""Per-replica lines (models with base_urls or `replicas = N`): one line per replica, under
the end-of-run table; results.json has the same figures (`replicas`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_distill.core import redact
from pytest_distill.report.fmt import ms


def replica_lines(replicas: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """`replica 1/2 of 'qwen': http://127.0.0.1:8001/v1 (GPUs 0,1): 6 requests, 0 errors, p50 12ms p95 20ms`."""
    lines = []
    for model, rows in replicas.items():
        for index, row in enumerate(rows, start=1):
            gpus = f" (GPUs {row['devices']})" if row.get("devices") else ""
            lines.append(
                f"replica {index}/{len(rows)} of '{model}': {redact.url(row['url'])}{gpus}: "
                f"{row['requests']} requests, {row['errors']} errors, "
                f"p50 {ms(row.get('latency_p50_s'))} p95 {ms(row.get('latency_p95_s'))}"
            )
    return lines
