"""Is anything listening where an OpenAI-compatible entry points? Asked once, before any item.

Without this check, a run against a server that isn't there spends each item's timeout
and retries before failing: thousands of identical errors. One GET /v1/models (a TCP
connect and a short read) tells it in under a few seconds, and lists the served model ids
(`model = "@served"` takes the first).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from pytest_distill.core import redact
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.registry import SERVED_MODEL, ModelEntry

TIMEOUT_S = 3.0
HOW_TO = (
    "start an OpenAI-compatible server there (e.g. `vllm serve <model> --port 8000`) or declare "
    "the model in your models.toml (docs/models.md)"
)


def needs_preflight(entry: ModelEntry) -> bool:
    """openai-compatible entries: no run of ours starts their server."""
    return entry.provider == "openai-compatible" and bool(entry.base_url)


def served_models(entry: ModelEntry, timeout_s: float = TIMEOUT_S) -> list[str]:
    """The ids at {base_url}/models; raises ConfigError (one line) when nothing answers there.
    Any HTTP reply (even 401 or 404) means a server is there: its own errors are the items'.
    With replicas (`base_urls`) one answering replica is enough: the router takes the others
    out when they refuse, so only "none answers" stops the run."""
    urls = entry.base_urls or [str(entry.base_url)]
    failure: ConfigError | None = None
    for url in urls:
        try:
            return _served_at(entry, url, timeout_s)
        except ConfigError as exc:
            failure = failure or exc
    assert failure is not None  # urls is never empty
    raise failure


def _served_at(entry: ModelEntry, url: str, timeout_s: float) -> list[str]:
    base_url = url.rstrip("/")
    shown = redact.url(base_url)
    request = urllib.request.Request(base_url + "/models", headers=_headers(entry))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            body = reply.read()
    except urllib.error.HTTPError:
        return []
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        where = f" (set by ${entry.base_url_env})" if entry.base_url_env and os.environ.get(entry.base_url_env) else ""
        env_hint = f"; or point ${entry.base_url_env} at one" if entry.base_url_env else ""
        replicas = f" (nor at any of its {len(entry.base_urls)} base_urls)" if len(entry.base_urls) > 1 else ""
        raise ConfigError(
            f"model '{entry.name}': nothing answers at {shown}{replicas}{where} ({redact.text(str(reason))}): "
            f"{HOW_TO}{env_hint}"
        ) from None
    return _ids(body)


def _headers(entry: ModelEntry) -> dict[str, str]:
    key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _ids(body: bytes) -> list[str]:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return []
    models = data.get("data") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return []
    return [str(m["id"]) for m in models if isinstance(m, dict) and m.get("id")]


def resolve_served_model(entry: ModelEntry, ids: list[str]) -> None:
    """`model = "@served"`: the first id the server lists."""
    if entry.model != SERVED_MODEL:
        return
    if not ids:
        hint = f"set ${entry.model_env} to the model's name" if entry.model_env else "set `model` in models.toml"
        raise ConfigError(
            f"model '{entry.name}': the server at {redact.url(entry.base_url)} lists no model at /models: {hint}"
        )
    entry.model = ids[0]
