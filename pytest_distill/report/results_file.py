"""results.json on disk: the one reader and writer, and its versioned schema.

The schema ships beside this module (results.schema.json); bump SCHEMA_VERSION on any
incompatible change. --distill-baseline reads a file through read_results().
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from pytest_distill.core.errors import ConfigError
from pytest_distill.core.records import Record

SCHEMA_NAME = "pytest-distill/results"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")
FILE_NAME = "results.json"


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def validate(document: Any) -> str | None:
    """The most relevant schema violation as one line, or None when the document is valid."""
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"schema violation at {where}: {error.message}"


def read_results(path: Path, what: str = "--distill-baseline") -> dict[str, Any]:
    """Read and check a results.json written by --distill-report (for --distill-baseline, or
    `what` names the command reading it)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path}: not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_NAME:
        raise ConfigError(f"{what} {path}: not a pytest-distill results.json")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"{what} {path}: schema version {document.get('schema_version')!r}, "
            f"this pytest-distill reads version {SCHEMA_VERSION}"
        )
    problem = validate(document)
    if problem:
        raise ConfigError(f"{what} {path}: {problem}")
    return document


def records_of(document: dict[str, Any]) -> list[Record]:
    known = set(Record.__dataclass_fields__)
    return [Record(**{k: v for k, v in r.items() if k in known}) for r in document.get("records", [])]


def write_text_atomically(path: Path, text: str) -> Path:
    """Never leave a half-written report behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_results(directory: Path, document: dict[str, Any]) -> Path:
    return write_text_atomically(directory / FILE_NAME, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
