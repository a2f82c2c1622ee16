"""Resolve `--model NAME` to a ModelEntry and build its provider.

Entries come from the built-in models.toml beside this module and the project's own
models file, which adds entries or overrides fields by name. Provider SDKs are imported
only when a provider of that kind is built, so a user without `anthropic` can still run
a local model.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_distill.core import redact
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Provider
from pytest_distill.models.providers import PROVIDERS
from pytest_distill.models.schema import check_models_entry, check_models_groups

BUILTIN_MODELS = Path(__file__).with_name("models.toml")

GROUPS_TABLE = "groups"  # [groups] in models.toml: NAME = [model or @group, ...]
GROUP_PREFIX = "@"
# `model = "@served"`: the first id the server's /v1/models lists (openai-compatible entries).
SERVED_MODEL = "@served"

# The built-in providers' own key variables (the SDKs read them when an entry names none).
BUILTIN_KEY_ENVS = ("OPENAI_API_KEY", "XAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")

# Self-hosted providers are priced by GPU time, APIs by tokens.
SELF_HOSTED = {"llama-cpp", "openai-compatible", "vllm"}
DEFAULT_GPU_HOURLY_USD = 2.40


@dataclass
class ModelEntry:
    name: str
    provider: str
    model: str
    description: str = ""
    base_url: str | None = None
    base_urls: list[str] = field(default_factory=list)  # replicas: the engine sends to the least busy
    api_key_env: str | None = None  # None: the SDK's usual variable
    temperature: float | None = None  # None: the provider's default
    max_tokens: int | None = None  # None: the suite's max_tokens, else its task type's default
    seed: int | None = None
    timeout_s: float = 120.0
    max_concurrency: int | None = None  # None: the provider's own default
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_retries: int = 4
    price_input: float | None = None  # USD per million tokens
    price_output: float | None = None
    price_cached_input: float | None = None
    prices_as_of: str | None = None
    price_source: str | None = None
    gpu_hourly_usd: float | None = None  # the older name of hourly_usd
    hourly_usd: float | None = None  # self-hosted: $/hour of `hardware`; wins over gpu_hourly_usd
    hardware: str | None = None  # what hourly_usd buys ("1x H100 80GB", "c7i.4xlarge"); None: "GPU"
    n_ctx: int = 4096  # llama-cpp
    n_threads: int | None = None  # llama-cpp, generating; None: cores / xdist workers
    n_threads_batch: int | None = None  # llama-cpp, reading the prompt; None: cores / xdist workers
    serve_args: list[str] = field(default_factory=list)  # vllm
    startup_timeout_s: float = 600.0  # vllm
    python: str | None = None  # vllm: interpreter or venv running `vllm serve` (else $DISTILL_VLLM_PYTHON)
    serve_env: dict[str, str] = field(default_factory=dict)  # vllm: extra environment for the server
    # vllm, managed: vLLM's parallelism (--tensor-/--pipeline-/--data-parallel-size; None: not
    # passed) and how many servers of the entry to start, each on its own GPUs and port.
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    replicas: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # extra request body fields
    # How an OpenAI-compatible server takes an output constraint: "json_schema" (OpenAI's
    # response_format), "json_object_schema" (llama-cpp-python's server),
    # "structured_outputs" (vLLM), or "none".
    constraint_style: str = "json_schema"
    # How an OpenAI-compatible server gets tools: "native" (the `tools` field), or
    # "json_schema": described in the system prompt, the reply constrained to a
    # {"name", "parameters"} JSON schema (for servers whose tool handling misbehaves,
    # e.g. llama-cpp-python's, which ignores max_tokens in tool arguments).
    tool_style: str = "native"
    # Repetitions per run unless --repeat forces a count: frontier APIs sample, so the
    # benchmark measures them 3x; None: 1.
    repeat: int | None = None
    # Declared deterministic (temperature 0, self-hosted): measured once unless --repeat
    # says otherwise. A claim, not a fact: batching changes the numerics (docs/models.md).
    deterministic: bool = False
    # Environment variables that, when set, replace base_url / model (e.g. DISTILL_BASE_URL).
    base_url_env: str | None = None
    model_env: str | None = None
    source: str = "built-in"  # where the entry was defined

    def __post_init__(self) -> None:
        if self.base_urls and not self.base_url:  # what describes the model; requests go to the replicas
            self.base_url = self.base_urls[0]

    @property
    def runs_per_example(self) -> int:
        """Repetitions when --repeat does not force a count."""
        return self.repeat or 1

    @property
    def self_hosted(self) -> bool:
        return self.provider in SELF_HOSTED

    def public_dict(self) -> dict[str, Any]:
        """The entry as reports show it: key *names* only; values that may be secrets are masked."""
        data = redact.value(dataclasses.asdict(self))
        data["base_url"] = redact.url(self.base_url)
        data["base_urls"] = [redact.url(u) for u in self.base_urls]
        data["serve_env"] = dict.fromkeys(self.serve_env, redact.MARKER)  # e.g. HF_TOKEN for a gated model
        data["serve_args"] = redact.args(self.serve_args)
        return data


def register_secrets(table: dict[str, Any]) -> None:
    """Tell core.redact every secret an entry (a ModelEntry's fields, as a dict) lets us
    know: its key variable's value, credentials in its base_url, secret-named params and
    serve_env values, and the values of secret serve_args options."""
    env = table.get("api_key_env")
    if isinstance(env, str) and env:
        redact.register(os.environ.get(env))
    base_url = table.get("base_url")
    if isinstance(base_url, str):
        redact.register_url(base_url)
    for url in table.get("base_urls") or []:
        if isinstance(url, str):
            redact.register_url(url)
    for mapping in (table.get("params"), table.get("serve_env")):
        if isinstance(mapping, dict):
            for name, value in mapping.items():
                if isinstance(value, str) and redact.SECRET_NAME.search(str(name)):
                    redact.register(value)
    serve_args = table.get("serve_args")
    if isinstance(serve_args, list):
        arguments = [str(a) for a in serve_args]
        for shown, original in zip(redact.args(arguments), arguments):
            if redact.MARKER in shown and shown != original:
                redact.register(original.partition("=")[2] if shown.endswith("=" + redact.MARKER) else original)


_FIELDS = {f.name for f in dataclasses.fields(ModelEntry)}


def _load_file(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(entries, groups) of one models file."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read models file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    groups = data.pop(GROUPS_TABLE, {})
    check_models_groups(path, groups)  # schema check (models/groups.schema.json)
    tables = data.get("models", data)  # accept [models.NAME] as well as [NAME]
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: entry '{name}' must be a table ([{name}])")
        check_models_entry(path, name, table)  # schema check (models/models.schema.json)
        unknown = set(table) - _FIELDS
        if unknown:
            raise ConfigError(
                f"{path}: model '{name}': unknown field(s) {', '.join(sorted(unknown))}; "
                f"known fields: {', '.join(sorted(_FIELDS - {'name', 'source'}))}"
            )
        if table.get("deterministic") and table.get("repeat", 1) > 1:
            raise ConfigError(
                f"{path}: model '{name}': deterministic = true and repeat = {table['repeat']} "
                "contradict each other; keep one (--repeat N repeats any model)"
            )
    return tables, groups


class Registry:
    def __init__(self, project_file: Path | None = None) -> None:
        self._tables: dict[str, dict[str, Any]] = {}
        builtin_tables, builtin_groups = _load_file(BUILTIN_MODELS)
        for name, table in builtin_tables.items():
            self._tables[name] = {**table, "source": "built-in"}
        # group name -> (members, the file defining it); a project's group replaces a built-in one
        self.groups: dict[str, tuple[list[str], str]] = {n: (m, "built-in") for n, m in builtin_groups.items()}
        self.project_file = project_file
        if project_file is not None:
            project_tables, project_groups = _load_file(project_file)
            for name, table in project_tables.items():
                merged = {**self._tables.get(name, {}), **table, "source": str(project_file)}
                self._tables[name] = merged
            self.groups.update({n: (m, str(project_file)) for n, m in project_groups.items()})
        for name, table in self._tables.items():
            _apply_env(name, table)
        # Secrets are registered the moment they are known, before any request or report.
        redact.register_all(os.environ.get(name) for name in BUILTIN_KEY_ENVS)
        for table in self._tables.values():
            register_secrets(table)

    def names(self) -> list[str]:
        return sorted(self._tables)

    def expand(self, names: list[str] | tuple[str, ...], where: str = "") -> tuple[str, ...]:
        """Model names with every `@group` replaced by its members (in order, duplicates
        dropped); raises ConfigError naming `where` for an unknown group or model."""
        out: dict[str, None] = {}

        def add(name: str, trail: tuple[str, ...]) -> None:
            if not name.startswith(GROUP_PREFIX):
                if name not in self._tables:
                    known = ", ".join(self.names())
                    raise ConfigError(
                        f"{where}unknown model '{name}'{' in group ' + trail[-1] if trail else ''}; "
                        f"known models: {known}"
                    )
                out[name] = None
                return
            group = name[len(GROUP_PREFIX) :]
            if group in trail:
                raise ConfigError(f"{where}group '@{group}' includes itself ({' -> '.join('@' + t for t in trail)})")
            if group not in self.groups:
                known = ", ".join("@" + g for g in sorted(self.groups)) or "none"
                raise ConfigError(
                    f"{where}unknown model group '@{group}'; known groups: {known} "
                    "(declare one under [groups] in models.toml)"
                )
            for member in self.groups[group][0]:
                add(member, (*trail, group))

        for name in names:
            add(name, ())
        return tuple(out)

    def get(self, name: str) -> ModelEntry:
        table = self._tables.get(name)
        if table is None:
            known = ", ".join(self.names())
            hint = f" (models file: {self.project_file})" if self.project_file else ""
            raise ConfigError(f"unknown model '{name}'{hint}; known models: {known}")
        if "provider" not in table or "model" not in table:
            raise ConfigError(f"{table.get('source')}: model '{name}' needs 'provider' and 'model'")
        if table["provider"] not in PROVIDERS:
            raise ConfigError(
                f"{table.get('source')}: model '{name}': unknown provider '{table['provider']}'; "
                f"known: {', '.join(sorted(PROVIDERS))}"
            )
        if table["provider"] in SELF_HOSTED and "temperature" not in table:
            # Distilled/local models are evaluated greedily; APIs keep their own default.
            table = {**table, "temperature": 0.0}
        try:
            entry = ModelEntry(name=name, **{k: v for k, v in table.items() if k != "name"})
        except TypeError as exc:
            raise ConfigError(f"{table.get('source')}: model '{name}': {exc}") from None
        check_layout_fields(entry)
        return entry


# vLLM's parallelism fields -> the `vllm serve` flags (providers/vllm.py passes them).
PARALLEL_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
}
# vLLM's short spellings of the same flags: a clash with them is a clash too.
PARALLEL_ALIASES = {
    "--tensor-parallel-size": ("-tp",),
    "--pipeline-parallel-size": ("-pp",),
    "--data-parallel-size": ("-dp",),
}


def check_layout_fields(entry: ModelEntry) -> None:
    """The parallelism fields and `replicas` (docs/vllm.md#scaling-out): what can be told from
    the entry alone, as one-line ConfigErrors naming the file and the entry. The GPU count is
    checked by the vLLM provider before its servers start (providers/vllm.py)."""
    where = f"{entry.source}: model '{entry.name}'"
    for name in (*PARALLEL_FLAGS, "replicas"):
        value = getattr(entry, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}: {name} must be an integer >= 1, got {value!r}")
    used = [name for name in (*PARALLEL_FLAGS, "replicas") if getattr(entry, name) is not None]
    if not used:
        return
    if entry.provider != "vllm":
        raise ConfigError(
            f'{where}: {", ".join(used)} apply to managed vLLM entries (provider = "vllm"), '
            f"not provider '{entry.provider}'"
        )
    if entry.base_url or entry.base_urls:
        raise ConfigError(
            f"{where}: {', '.join(used)} apply to servers the plugin starts; this entry attaches to "
            "base_url/base_urls (set the sizes on those servers, list replicas in base_urls)"
        )
    for name, flag in PARALLEL_FLAGS.items():
        if getattr(entry, name) is None:
            continue
        for spelling in (flag, *PARALLEL_ALIASES[flag]):
            if any(arg == spelling or arg.startswith(spelling + "=") for arg in entry.serve_args):
                raise ConfigError(
                    f"{where}: {name} = {getattr(entry, name)} and serve_args {spelling} both set vLLM's "
                    f"{flag}; keep one (the field is checked against the visible GPUs)"
                )


def _apply_env(name: str, table: dict[str, Any]) -> None:
    """base_url_env / model_env: a set variable replaces the declared value."""
    for field_name, env_field in (("base_url", "base_url_env"), ("model", "model_env")):
        variable = table.get(env_field)
        value = os.environ.get(variable) if isinstance(variable, str) else None
        if not value:
            continue
        if field_name == "base_url" and not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"${variable} (base_url of model '{name}'): must start with "
                f"http:// or https://, got {redact.url(value)!r}"
            )
        table[field_name] = value


def provider_class(entry: ModelEntry) -> type[Provider]:
    """The entry's provider class (its SDK imported), for class-level defaults."""
    module_name, _, class_name = PROVIDERS[entry.provider].partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_provider(entry: ModelEntry) -> Provider:
    """Build the provider for an entry, importing its SDK only now."""
    register_secrets(dataclasses.asdict(entry))  # the entry may have been changed since get()
    module_name, _, class_name = PROVIDERS[entry.provider].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model '{entry.name}' needs the provider '{entry.provider}', whose package is not "
            f"installed ({exc.name}); install it, e.g. pip install 'pytest-distill[{_extra(entry.provider)}]'"
        ) from None
    return getattr(module, class_name)(entry)


def _extra(provider: str) -> str:
    return {"llama-cpp": "local", "vllm": "vllm"}.get(provider, "api")


def eval_concurrency(entries: Mapping[str, ModelEntry]) -> dict[str, int]:
    """Requests in flight per model during evaluation: the entry's max_concurrency, else its provider's default."""
    return {name: entry.max_concurrency or provider_class(entry).max_concurrency for name, entry in entries.items()}
