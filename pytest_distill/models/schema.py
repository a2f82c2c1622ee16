"""models.toml entries against models.schema.json (beside this module), its provider enum
filled from PROVIDERS so the schema file cannot drift from the code."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from pytest_distill.core import settings
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.providers import PROVIDERS

SCHEMA_FILE = Path(__file__).with_name("models.schema.json")
GROUPS_SCHEMA_FILE = Path(__file__).with_name("groups.schema.json")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The schema of one models.toml entry, enums filled in."""
    raw = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema: dict[str, Any] = settings.fill_enums(raw, {"providers": sorted(PROVIDERS)})
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def check_models_entry(path: Path, name: str, table: dict[str, Any]) -> None:
    """Raise one ConfigError for the first problem of one models.toml entry ([NAME] or
    [models.NAME]), naming the file, the line and the field."""
    found = settings.check(_validator(), table, "a table")
    if found is None:
        return
    parts, message = found
    text = _text(path)
    line = settings.toml_line(text, [name, *parts]) or settings.toml_line(text, ["models", name, *parts])
    raise _error(path, line, f"model '{name}'", parts, message)


def _text(path: Path) -> str:
    """The file's text, for finding a field's line ("" when it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return ""


def _error(path: Path, line: int | None, subject: str, parts: Any, message: str) -> ConfigError:
    where = f"{path}:{line}" if line else str(path)
    return ConfigError(f"{where}: {subject} field '{settings.field_path(parts)}': {message}")


@functools.cache
def load_groups_schema() -> dict[str, Any]:
    """The schema of models.toml's [groups] table."""
    schema: dict[str, Any] = json.loads(GROUPS_SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


def check_models_groups(path: Path, groups: Any) -> None:
    """Raise one ConfigError for the first problem of a models.toml [groups] table, naming the
    file, the line and the group."""
    found = settings.check(Draft202012Validator(load_groups_schema()), groups, "a table")
    if found is None:
        return
    parts, message = found
    raise _error(path, settings.toml_line(_text(path), ["groups", *parts]), "[groups]", parts, message)
