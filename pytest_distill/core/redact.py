"""The one place secrets are taken out of text we write.

Every path that writes text a user or CI can read (error messages, answers, records, cache
rows, JUnit, reports, server logs, the terminal) passes it through `text()` or `value()`.
The run registers what it knows to be secret as soon as it learns it: every `api_key_env`
value, the built-in providers' keys, credentials inside URLs (and the base64 form a
server echoes back in `Authorization: Basic ...`). One marker everywhere: MARKER.

The registry is per process on purpose: a secret comes from this process's environment,
and an xdist worker registers the ones it resolves itself.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MARKER = "[REDACTED]"
# Shorter strings would redact ordinary words; no real key or password is this short.
MIN_SECRET_LENGTH = 6
# Option and setting names whose value is a secret wherever it appears.
SECRET_NAME = re.compile(r"(api[-_]?key|token|secret|password|passwd|authorization|credential)", re.IGNORECASE)

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(secret: str | None) -> None:
    """Redact `secret` from now on (ignored when empty or too short to be a secret)."""
    global _pattern
    if not secret or len(secret) < MIN_SECRET_LENGTH or secret in _secrets:
        return
    _secrets.add(secret)
    # Longest first, so a secret that contains another is replaced whole.
    _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def register_url(url: str | None) -> None:
    """Credentials in a URL (`https://user:pass@host`), and their Basic-auth base64 form."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        register(password)
        register(f"{user}:{password}")
        register(base64.b64encode(f"{user}:{password}".encode()).decode())


def register_all(secrets: Iterable[str | None]) -> None:
    for secret in secrets:
        register(secret)


def text(value: str) -> str:
    """`value` with every registered secret replaced by MARKER."""
    if _pattern is None or not value:
        return value
    return _pattern.sub(MARKER, value)


def value(data: Any, key: str = "") -> Any:
    """A JSON-like value with secrets removed: registered secrets anywhere in its strings,
    and the whole value of any mapping key or `--option=value` that names a secret."""
    if key and SECRET_NAME.search(key) and not key.endswith("_env") and isinstance(data, str) and data:
        return MARKER
    if isinstance(data, str):
        return text(data)
    if isinstance(data, dict):
        return {k: value(v, str(k)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [value(v) for v in data]
    return data


def strings(data: Any) -> Any:
    """A JSON-like value with registered secrets removed from its strings only: unlike
    value(), keys are not judged by name (a model's tool call may have a `password`
    argument that is not ours and must be scored as sent)."""
    if _pattern is None:
        return data
    if isinstance(data, str):
        return text(data)
    if isinstance(data, dict):
        return {k: strings(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strings(v) for v in data]
    return data


def url(address: str | None) -> str | None:
    """`address` with the password of any `user:password@` part masked, whether or not it
    was registered (for describing an entry)."""
    if not address:
        return address
    try:
        parts = urlsplit(address)
        password = parts.password
    except ValueError:
        return text(address)
    if password:
        netloc = parts.netloc.replace(f":{password}@", f":{MARKER}@", 1)
        address = parts._replace(netloc=netloc).geturl()
    return text(address)


def args(arguments: Iterable[str]) -> list[str]:
    """A command line with the values of secret options masked (`--api-key X`, `--token=X`)."""
    out: list[str] = []
    mask_next = False
    for argument in arguments:
        if mask_next:
            out.append(MARKER)
            mask_next = False
            continue
        name, eq, _ = argument.partition("=")
        if name.startswith("-") and SECRET_NAME.search(name):
            if eq:
                out.append(f"{name}={MARKER}")
            else:
                out.append(argument)
                mask_next = True
            continue
        out.append(text(argument))
    return out


def clear() -> None:
    """Forget every secret (tests)."""
    global _pattern
    _secrets.clear()
    _pattern = None
