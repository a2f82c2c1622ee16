"""Errors the plugin turns into one clear line for the user, never a traceback."""

from __future__ import annotations

from pathlib import Path


class DistillError(Exception):
    """A mistake in the user's data, options or model configuration."""


class SuiteError(DistillError):
    """Bad suite data: always names the file, and the line and field when known."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None, field: str | None = None):
        self.path = Path(path)
        self.line = line
        self.field = field
        self.message = message
        where = str(path) + (f":{line}" if line is not None else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


class ConfigError(DistillError):
    """Bad options or model configuration (models.toml, --model, missing keys)."""
