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
from collections.abc import Callable, Iterable
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


class ServerPlan(Protocol):
    """What a provider asks to have run (see models/providers/vllm.py)."""

    kind: str  # "vLLM": for messages
    command: list[str]
    env: dict[str, str]
    base_url: str  # http://HOST:PORT/v1
    health_url: str  # 200 once it serves
    log_name: str  # file name of its log, in the run's log folder
    startup_timeout_s: float


@runtime_checkable
class ServesItself(Protocol):
    """A provider that can run its own server when its entry names none."""

    def server_plan(self) -> ServerPlan | None:
        """The server to start, or None when the entry points at one already (base_url)."""

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
    ) -> None:
        self.name = name
        self.kind = kind
        self.command = command
        self.env = env
        self.base_url = base_url
        self.health_url = health_url
        self.log_path = Path(log_path)
        self.status_path = self.log_path.with_suffix(".exit.json")
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self._copier: threading.Thread | None = None

    @classmethod
    def from_plan(cls, name: str, plan: ServerPlan, log_dir: Path) -> ManagedServer:
        return cls(
            name=name,
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
            kind=self.kind,
            base_url=self.base_url,
            log_path=str(self.log_path),
            status_path=str(self.status_path),
            pid=self.proc.pid,
        )

    # --- start ------------------------------------------------------------
    def start(self, progress: Callable[[str], None] | None = None) -> ServerInfo:
        say = progress or (lambda line: None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()
        started = time.monotonic()
        _register_secrets(self.command, {k: v for k, v in self.env.items() if os.environ.get(k) != v})
        log = self.log_path.open("wb")
        log.write(("$ " + " ".join(redact.args(self.command)) + "\n").encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            log.close()
            raise ServerStartError(
                f"cannot start the {self.kind} server for '{self.name}': {self.command[0]}: {exc.strerror}"
            ) from None
        assert self.proc.stdout is not None
        self._copier = threading.Thread(
            target=_copy_redacted, args=(self.proc.stdout, log), name=f"distill-log-{self.name}", daemon=True
        )
        self._copier.start()
        _LIVE.add(self)
        self._watcher = threading.Thread(target=self._watch, name=f"distill-watch-{self.name}", daemon=True)
        self._watcher.start()
        say(
            f"pytest-distill: starting the {self.kind} server for '{self.name}' at {self.base_url} "
            f"(pid {self.proc.pid}, log {self.log_path})"
        )
        try:
            self._wait_healthy(started, say)
        except BaseException:  # start-up failed, timed out, or Ctrl-C: leave nothing behind
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        say(f"pytest-distill: {self.kind} server for '{self.name}' ready in {self.startup_s:.0f} s")
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
            if now - started > self.startup_timeout_s:
                raise ServerStartError(
                    self._failure(
                        f"did not become healthy ({self.health_url}) within {self.startup_timeout_s:g} s "
                        "(startup_timeout_s)"
                    )
                )
            if now >= next_progress:
                last = log_tail(self.log_path, lines=1, width=120)
                say(
                    f"pytest-distill: waiting for the {self.kind} server for '{self.name}' "
                    f"({now - started:.0f} s){': ' + last if last else ''}"
                )
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _failure(self, what: str) -> str:
        tail = log_tail(self.log_path)
        return (
            f"the {self.kind} server for '{self.name}' {what}; log: {self.log_path}\n"
            f"--- last lines of the log ---\n{tail}"
            if tail
            else f"the {self.kind} server for '{self.name}' {what}; log: {self.log_path} (empty)"
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
    """The managed servers one process uses: entry name -> ServerInfo. In the controller
    (or a serial run) it also owns the processes it started."""

    def __init__(self, running: dict[str, ServerInfo] | None = None) -> None:
        self.servers: dict[str, ManagedServer] = {}  # started here
        self.running: dict[str, ServerInfo] = dict(running or {})

    def get(self, name: str) -> ServerInfo | None:
        return self.running.get(name)

    def provider_for(self, entry: ModelEntry) -> Provider:
        """The entry's provider, attached to its managed server if one runs."""
        provider = create_provider(entry)
        info = self.running.get(entry.name)
        if info is not None and isinstance(provider, ServesItself):
            provider.use_server(info)
        return provider

    @staticmethod
    def plan_for(entry: ModelEntry) -> ServerPlan | None:
        provider = create_provider(entry)
        return provider.server_plan() if isinstance(provider, ServesItself) else None

    def needs_server(self, entry: ModelEntry) -> bool:
        provider = create_provider(entry)
        return isinstance(provider, ServesItself) and provider.server_plan() is not None

    def start(
        self, entries: Iterable[ModelEntry], log_dir: Path, progress: Callable[[str], None] | None = None
    ) -> None:
        try:
            for entry in entries:
                if entry.name in self.running:
                    continue
                plan = self.plan_for(entry)
                if plan is None:
                    continue
                server = ManagedServer.from_plan(entry.name, plan, log_dir)
                self.servers[entry.name] = server
                self.running[entry.name] = server.start(progress)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for name, server in list(self.servers.items()):
            server.stop()
            self.running.pop(name, None)
        self.servers.clear()

    def stop_one(self, name: str) -> int | None:
        """Stop the server this pool started for one entry (its whole process group); its pid."""
        server = self.servers.pop(name, None)
        self.running.pop(name, None)
        if server is None or server.proc is None:
            return None
        server.stop()
        return server.proc.pid


def worker_input(pool: ServerPool) -> dict[str, dict[str, Any]]:
    """What an xdist worker needs of the controller's pool, as plain (JSON-able) data."""
    return {name: info.to_dict() for name, info in pool.running.items()}


def from_worker_input(data: dict[str, dict[str, Any]] | None) -> ServerPool:
    """A worker's pool: the controller's servers, which the worker uses but never stops."""
    return ServerPool({name: ServerInfo.from_dict(value) for name, value in (data or {}).items()})
