"""Model servers the plugin runs itself (vLLM): start once, watch, stop the whole group.

A ManagedServer is one subprocess in its own process group (so stopping it also stops
the workers it forks), with its output in a log file. `start()` waits for the health
URL, printing a progress line now and then; if the process exits or never becomes
healthy, it is stopped and a ServerStartError carries one line plus the log's tail.

While it runs, a watcher thread waits on the process; when it exits, the watcher writes
a small status file beside the log. That file is how anyone, in this process or in an
xdist worker (which only gets a ServerInfo), learns that the server died: providers then
fail the remaining requests at once with "server exited" and the log tail.

What to run is the provider's business: a provider that runs its own server (vLLM)
implements `ServesItself`, giving a `ServerPlan` (command line, environment, URLs) and
taking the running server's `ServerInfo`. This module runs any plan the same way. Which
server serves which model is explicit state: the `ServerPool` the run holds, passed to
the engine; the controller (or a serial run) owns the processes and xdist workers get a
pool of ServerInfo built from plain data (`worker_input` / `from_worker_input`).

Servers are stopped at session finish, at unconfigure (failed sessions, Ctrl-C), at
interpreter exit, and by the kernel when the parent dies (PR_SET_PDEATHSIG), so none is
left behind. What a server prints goes through core.redact on its way to the log file.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from pytest_distill.core import redact
from pytest_distill.core.errors import DistillError
from pytest_distill.models.base import Provider
from pytest_distill.models.registry import ModelEntry, create_provider

LOG_TAIL_LINES = 25
PROGRESS_EVERY_S = 10.0
STOP_GRACE_S = 20.0


class ServerStartError(DistillError):
    """A managed server could not be started: one line, then the log's tail."""


def log_tail(path: str | Path, lines: int = LOG_TAIL_LINES, width: int = 400) -> str:
    """The last `lines` lines of a log file (long lines cut), or '' if there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # progress bars redraw with \r: keep the last state of each line
    rows = [row.rsplit("\r", 1)[-1] for row in data.splitlines()]
    rows = [row if len(row) <= width else row[: width - 3] + "..." for row in rows if row.strip()]
    return redact.text("\n".join(rows[-lines:]))  # logs written before a secret was known


@dataclass
class ServerInfo:
    """What a provider needs to use a managed server, and to tell that it died.
    JSON-serialisable: it travels to xdist workers."""

    name: str  # the model entry it serves
    kind: str  # "vLLM"
    base_url: str  # http://HOST:PORT/v1
    log_path: str
    status_path: str  # written by the owner's watcher when the process exits
    pid: int
    devices: str | None = None  # its CUDA_VISIBLE_DEVICES, when the plugin split the GPUs (replicas)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerInfo:
        return cls(**data)

    def exit_code(self) -> int | None:
        """The exit code once the server has exited, else None."""
        try:
            return int(json.loads(Path(self.status_path).read_text())["returncode"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def exited(self, wait_s: float = 0.0) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            if self.exit_code() is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def exit_message(self) -> str:
        code = self.exit_code()
        how = f"code {code}" if code is None or code >= 0 else f"signal {-code}"
        tail = log_tail(self.log_path, lines=10)
        return f"{self.kind} server for '{self.name}' exited ({how}); log {self.log_path}, last lines:\n{tail}"


@dataclass
class UnavailableServer(ServerInfo):
    """A model whose server could not be had (its start failed, or the wait for it gave up):
    every request fails at once with `reason`, never a hang (runtime/rotation.py)."""

    reason: str = ""

    def exit_code(self) -> int | None:
        return 1

    def exit_message(self) -> str:
        return self.reason


class ServerPlan(Protocol):
    """What a provider asks to have run (see models/providers/vllm.py)."""

    kind: str  # "vLLM": for messages
    command: list[str]
    env: dict[str, str]
    base_url: str  # http://HOST:PORT/v1
    health_url: str  # 200 once it serves
    log_name: str  # file name of its log, in the run's log folder
    startup_timeout_s: float
    # optional: `replica` (0-based, with `replicas = N`) and `devices` (its CUDA_VISIBLE_DEVICES)


@runtime_checkable
class ServesItself(Protocol):
    """A provider that can run its own server when its entry names none."""

    def server_plans(self) -> list[ServerPlan]:
        """The servers to start (several: replicas of the model), or [] when the entry points at
        one already (base_url)."""

    def use_server(self, server: ServerInfo) -> None:
        """Send requests to this running server (and tell when it has died)."""


def _register_secrets(command: list[str], env: dict[str, str]) -> None:
    """Secrets on the server's command line or in its own environment: redacted from
    everything the server prints (vLLM echoes its arguments, --api-key included)."""
    for argument, masked in zip(command, redact.args(command)):
        if masked != argument and redact.MARKER in masked:
            redact.register(argument.partition("=")[2] if masked.endswith("=" + redact.MARKER) else argument)
    for name, value in env.items():
        if redact.value({name: value}) == {name: redact.MARKER}:
            redact.register(value)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGTERM this child when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one server and tell it is up: fixed before it starts."""

    kind: str  # "vLLM": for messages
    command: list[str]
    env: dict[str, str]
    base_url: str
    health_url: str
    startup_timeout_s: float
    cwd: str | None = None
    devices: str | None = None  # its CUDA_VISIBLE_DEVICES (replicas)


class ManagedServer:
    def __init__(
        self,
        *,
        name: str,
        kind: str,
        command: list[str],
        env: dict[str, str],
        base_url: str,
        health_url: str,
        log_path: Path,
        startup_timeout_s: float,
        cwd: str | None = None,
        devices: str | None = None,
    ) -> None:
        self.name = name
        self.spec = LaunchSpec(kind, command, env, base_url, health_url, startup_timeout_s, cwd, devices)
        self.log_path = Path(log_path)
        self.status_path = self.log_path.with_suffix(".exit.json")
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._started = 0.0  # time.monotonic() at launch
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self._copier: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    @classmethod
    def from_plan(cls, name: str, plan: ServerPlan, log_dir: Path) -> ManagedServer:
        replica = getattr(plan, "replica", None)
        return cls(
            name=name if replica is None else f"{name}#{replica}",  # replicas: 'qwen#0', 'qwen#1'
            devices=getattr(plan, "devices", None),
            kind=plan.kind,
            command=list(plan.command),
            env=dict(plan.env),
            base_url=plan.base_url,
            health_url=plan.health_url,
            log_path=Path(log_dir) / plan.log_name,
            startup_timeout_s=plan.startup_timeout_s,
        )

    @property
    def info(self) -> ServerInfo:
        assert self.proc is not None
        return ServerInfo(
            name=self.name,
            kind=self.spec.kind,
            base_url=self.spec.base_url,
            log_path=str(self.log_path),
            status_path=str(self.status_path),
            pid=self.proc.pid,
            devices=self.spec.devices,
        )

    # --- start ------------------------------------------------------------
    def start(self, progress: Callable[[str], None] | None = None) -> ServerInfo:
        self.launch(progress)
        return self.wait_ready(progress)

    def launch(self, progress: Callable[[str], None] | None = None) -> None:
        """Start the process (not waiting for it to serve). In the thread that lives as long as
        the server: PR_SET_PDEATHSIG fires when the *thread* that forked the child ends."""
        say = progress or (lambda line: None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()
        self._started = time.monotonic()
        _register_secrets(self.spec.command, {k: v for k, v in self.spec.env.items() if os.environ.get(k) != v})
        log = self.log_path.open("wb")
        log.write(("$ " + " ".join(redact.args(self.spec.command)) + "\n").encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.spec.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.spec.env,
                cwd=self.spec.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            log.close()
            raise ServerStartError(
                f"cannot start the {self.spec.kind} server for '{self.name}': {self.spec.command[0]}: {exc.strerror}"
            ) from None
        assert self.proc.stdout is not None
        self._copier = threading.Thread(
            target=_copy_redacted, args=(self.proc.stdout, log), name=f"distill-log-{self.name}", daemon=True
        )
        self._copier.start()
        _LIVE.add(self)
        self._watcher = threading.Thread(target=self._watch, name=f"distill-watch-{self.name}", daemon=True)
        self._watcher.start()
        gpus = f"CUDA_VISIBLE_DEVICES={self.spec.devices}, " if self.spec.devices is not None else ""
        say(
            f"pytest-distill: starting the {self.spec.kind} server for '{self.name}' at {self.spec.base_url} "
            f"({gpus}pid {self.proc.pid}, log {self.log_path})"
        )

    def wait_ready(self, progress: Callable[[str], None] | None = None) -> ServerInfo:
        """Wait for the launched server's health URL; stops it on failure, timeout or Ctrl-C."""
        say = progress or (lambda line: None)
        started = self._started
        try:
            self._wait_healthy(started, say)
        except BaseException:  # start-up failed, timed out, or Ctrl-C: leave nothing behind
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        say(f"pytest-distill: {self.spec.kind} server for '{self.name}' ready in {self.startup_s:.0f} s")
        return self.info

    def _wait_healthy(self, started: float, say: Callable[[str], None]) -> None:
        assert self.proc is not None
        next_progress = started + PROGRESS_EVERY_S
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(self._failure(f"exited with code {code} during start-up"))
            if self._healthy():
                return
            now = time.monotonic()
            if now - started > self.spec.startup_timeout_s:
                raise ServerStartError(
                    self._failure(
                        f"did not become healthy ({self.spec.health_url}) within {self.spec.startup_timeout_s:g} s "
                        "(startup_timeout_s)"
                    )
                )
            if now >= next_progress:
                last = log_tail(self.log_path, lines=1, width=120)
                say(
                    f"pytest-distill: waiting for the {self.spec.kind} server for '{self.name}' "
                    f"({now - started:.0f} s){': ' + last if last else ''}"
                )
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.spec.health_url, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _failure(self, what: str) -> str:
        tail = log_tail(self.log_path)
        return (
            f"the {self.spec.kind} server for '{self.name}' {what}; log: {self.log_path}\n"
            f"--- last lines of the log ---\n{tail}"
            if tail
            else f"the {self.spec.kind} server for '{self.name}' {what}; log: {self.log_path} (empty)"
        )

    def _watch(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if self._copier is not None:  # the log is complete before anyone is told of the exit
            self._copier.join(timeout=5)
        with contextlib.suppress(OSError):
            self.status_path.write_text(json.dumps({"returncode": code, "stopped": self._stopping}))

    # --- stop -------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
        proc = self.proc
        if proc is None:
            return
        self._stopping = True
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(pgid)):
            time.sleep(0.1)
        if proc.poll() is None or _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        _LIVE.discard(self)


def _copy_redacted(source: IO[bytes], log: IO[bytes]) -> None:
    """The server's output, line by line, into its log with secrets redacted."""
    with log, source:
        for line in iter(source.readline, b""):
            log.write(redact.text(line.decode("utf-8", errors="replace")).encode())
            log.flush()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg; they are gone once reaped, so look at their state.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


_LIVE: set[ManagedServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        server.stop(grace_s=10)


# --- the servers of one pytest session -----------------------------------------


class ServerPool:
    """The managed servers one process uses: entry name -> its ServerInfo(s), one per replica.
    In the controller (or a serial run) it also owns the processes it started."""

    def __init__(self, running: Mapping[str, ServerInfo | list[ServerInfo]] | None = None) -> None:
        self.servers: dict[str, list[ManagedServer]] = {}  # started here
        self.running: dict[str, list[ServerInfo]] = {
            name: list(infos) if isinstance(infos, list) else [infos] for name, infos in (running or {}).items()
        }
        # Several managed servers take turns (runtime/rotation.py): the entries whose servers start
        # later, for their turn, and every server started so far (its replicas' layout outlives it).
        self.later: set[str] = set()
        self.seen: dict[str, list[ServerInfo]] = {}

    def get(self, name: str) -> ServerInfo | None:
        """The entry's (first) server."""
        infos = self.running.get(name)
        return infos[0] if infos else None

    def replicas_of(self, name: str) -> list[ServerInfo]:
        """Every server running for the entry: more than one with `replicas = N`."""
        return list(self.running.get(name) or [])

    def started_for(self, name: str) -> list[ServerInfo]:
        """The servers started for the entry in this run, running or stopped since (its turn is over)."""
        return list(self.running.get(name) or self.seen.get(name) or [])

    # --- turns (runtime/rotation.py): a worker's view of the controller's servers ---------
    def attach(self, name: str, infos: list[ServerInfo]) -> None:
        self.running[name] = list(infos)

    def detach(self, name: str) -> None:
        self.running.pop(name, None)

    def fail(self, name: str, reason: str, kind: str = "vLLM") -> None:
        """The entry has no server and will get none: its requests fail at once with `reason`."""
        self.running[name] = [
            UnavailableServer(
                name=name,
                kind=kind,
                base_url="http://127.0.0.1:9/v1",
                log_path="",
                status_path="",
                pid=0,
                reason=reason,
            )
        ]

    def provider_for(self, entry: ModelEntry) -> Provider:
        """The entry's provider, attached to its managed server (the first replica) if one runs."""
        return self.provider_on(entry, self.get(entry.name))

    @staticmethod
    def provider_on(entry: ModelEntry, info: ServerInfo | None) -> Provider:
        """A provider for the entry attached to this one server (a replica's own provider)."""
        provider = create_provider(entry)
        if info is not None and isinstance(provider, ServesItself):
            provider.use_server(info)
        return provider

    @staticmethod
    def plans_for(entry: ModelEntry) -> list[ServerPlan]:
        provider = create_provider(entry)
        return provider.server_plans() if isinstance(provider, ServesItself) else []

    def needs_server(self, entry: ModelEntry) -> bool:
        provider = create_provider(entry)
        return isinstance(provider, ServesItself) and bool(provider.server_plans())

    def start(
        self, entries: Iterable[ModelEntry], log_dir: Path, progress: Callable[[str], None] | None = None
    ) -> None:
        try:
            for entry in entries:
                if entry.name not in self.running:
                    self.start_one(entry, log_dir, progress)
        except BaseException:
            self.stop()
            raise

    def start_one(self, entry: ModelEntry, log_dir: Path, progress: Callable[[str], None] | None = None) -> None:
        """Start the entry's server(s); if one fails, the entry's servers are stopped (others are left
        running) and the ServerStartError is raised."""
        plans = self.plans_for(entry)
        if not plans:
            return
        started = [ManagedServer.from_plan(entry.name, plan, log_dir) for plan in plans]
        self.servers[entry.name] = started
        try:
            self.running[entry.name] = _start_together(started, progress)
        except BaseException:
            self.stop_one(entry.name)
            raise
        self.seen[entry.name] = list(self.running[entry.name])

    def stop(self) -> None:
        for name, started in list(self.servers.items()):
            for server in started:
                server.stop()
            self.running.pop(name, None)
        self.servers.clear()

    def stop_one(self, name: str) -> int | None:
        """Stop the server(s) this pool started for one entry (whole process groups); the first pid."""
        started = self.servers.pop(name, [])
        self.running.pop(name, None)
        for server in started:
            server.stop()
        pids = [server.proc.pid for server in started if server.proc is not None]
        return pids[0] if pids else None


def _start_together(servers: list[ManagedServer], progress: Callable[[str], None] | None) -> list[ServerInfo]:
    """Start an entry's servers (its replicas) at once: launched from this thread, then each
    waited for in its own thread; if one fails, the first failure is raised (the caller stops
    them all)."""
    if len(servers) == 1:
        return [servers[0].start(progress)]
    lock = threading.Lock()

    def say(line: str) -> None:
        if progress is not None:
            with lock:
                progress(line)

    infos: list[ServerInfo | None] = [None] * len(servers)
    failures: list[BaseException] = []

    def wait_one(index: int) -> None:
        try:
            infos[index] = servers[index].wait_ready(say)
        except BaseException as exc:  # handed to the caller's thread
            failures.append(exc)

    for server in servers:  # launched here: a server dies with the thread that forked it (PDEATHSIG)
        server.launch(say)

    threads = [
        threading.Thread(target=wait_one, args=(i,), name=f"distill-start-{s.name}", daemon=True)
        for i, s in enumerate(servers)
    ]
    for thread in threads:
        thread.start()
    stopped = False
    for thread in threads:
        while thread.is_alive():  # a timed join keeps Ctrl-C deliverable in this thread
            thread.join(timeout=0.2)
            if failures and not stopped:  # one failed: the others need not finish starting
                stopped = True
                for server in servers:
                    server.stop()
    if failures:
        raise failures[0]
    return [info for info in infos if info is not None]


def worker_input(pool: ServerPool) -> dict[str, list[dict[str, Any]]]:
    """What an xdist worker needs of the controller's pool, as plain (JSON-able) data."""
    return {name: [info.to_dict() for info in infos] for name, infos in pool.running.items()}


def from_worker_input(data: Mapping[str, Any] | None) -> ServerPool:
    """A worker's pool: the controller's servers, which the worker uses but never stops."""
    running: dict[str, list[ServerInfo]] = {}
    for name, value in (data or {}).items():
        values = value if isinstance(value, list) else [value]
        running[name] = [ServerInfo.from_dict(v) for v in values]
    return ServerPool(running)
