"""Model servers the plugin runs itself (vLLM): start once, watch, stop the whole group.

A ManagedServer is one subprocess in its own process group (so stopping it also stops
the workers it forks), with its output in a log file. `start()` waits for the health
URL, printing a progress line now and then; if the process exits or never becomes
healthy, it is stopped and a ServerStartError carries one line plus the log's tail.

While it runs, a watcher thread waits on the process; when it exits, the watcher writes
a small status file beside the log. That file is how anyone, in this process or in an
xdist worker (which only gets a ServerInfo), learns that the server died: providers then
fail the remaining requests at once with "server exited" and the log tail.

The controller (or a serial run) owns the processes; workers get ServerInfo dicts
through xdist's workerinput. Servers are stopped at session finish, at unconfigure
(failed sessions, Ctrl-C), at interpreter exit, and by the kernel when the parent dies
(PR_SET_PDEATHSIG), so none is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_distill.core.errors import DistillError
from pytest_distill.models.registry import mask_secret_args

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
    return "\n".join(rows[-lines:])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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


# entry name -> the server it uses in this process (set by the owner, or from workerinput)
_ATTACHED: dict[str, ServerInfo] = {}


def attach(info: ServerInfo) -> None:
    _ATTACHED[info.name] = info


def detach(name: str) -> None:
    _ATTACHED.pop(name, None)


def info_for(name: str) -> ServerInfo | None:
    return _ATTACHED.get(name)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGTERM this child when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedServer:
    def __init__(self, *, name: str, kind: str, command: list[str], env: dict[str, str], base_url: str,
                 health_url: str, log_path: Path, startup_timeout_s: float, cwd: str | None = None) -> None:
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

    @property
    def info(self) -> ServerInfo:
        assert self.proc is not None
        return ServerInfo(name=self.name, kind=self.kind, base_url=self.base_url, log_path=str(self.log_path),
                          status_path=str(self.status_path), pid=self.proc.pid)

    # --- start ------------------------------------------------------------
    def start(self, progress: Callable[[str], None] | None = None) -> ServerInfo:
        say = progress or (lambda line: None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            log.write(("$ " + " ".join(mask_secret_args(self.command)) + "\n").encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, cwd=self.cwd, start_new_session=True, preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ServerStartError(f"cannot start the {self.kind} server for '{self.name}': "
                                       f"{self.command[0]}: {exc.strerror}") from None
        _LIVE.add(self)
        self._watcher = threading.Thread(target=self._watch, name=f"distill-watch-{self.name}", daemon=True)
        self._watcher.start()
        say(f"pytest-distill: starting the {self.kind} server for '{self.name}' at {self.base_url} "
            f"(pid {self.proc.pid}, log {self.log_path})")
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
                raise ServerStartError(self._failure(
                    f"did not become healthy ({self.health_url}) within {self.startup_timeout_s:g} s "
                    "(startup_timeout_s)"))
            if now >= next_progress:
                last = log_tail(self.log_path, lines=1, width=120)
                say(f"pytest-distill: waiting for the {self.kind} server for '{self.name}' "
                    f"({now - started:.0f} s){': ' + last if last else ''}")
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
        return (f"the {self.kind} server for '{self.name}' {what}; log: {self.log_path}\n"
                f"--- last lines of the log ---\n{tail}" if tail else
                f"the {self.kind} server for '{self.name}' {what}; log: {self.log_path} (empty)")

    def _watch(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
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
        detach(self.name)


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

# provider name -> "module:function" building a ManagedServer for an entry that needs one
MANAGED: dict[str, str] = {"vllm": "pytest_distill.models.providers.vllm:plan_server"}


class ServerPool:
    """The servers one session started (controller side)."""

    def __init__(self) -> None:
        self.servers: dict[str, ManagedServer] = {}

    @staticmethod
    def needs_server(entry: Any) -> bool:
        return entry.provider in MANAGED and not entry.base_url

    def start(self, entries: Iterable[Any], log_dir: Path, progress: Callable[[str], None] | None = None) -> None:
        import importlib

        try:
            for entry in entries:
                if not self.needs_server(entry) or entry.name in self.servers:
                    continue
                module, _, function = MANAGED[entry.provider].partition(":")
                server = getattr(importlib.import_module(module), function)(entry, log_dir)
                self.servers[entry.name] = server
                attach(server.start(progress))
        except BaseException:
            self.stop()
            raise

    def worker_input(self) -> dict[str, dict[str, Any]]:
        return {name: s.info.to_dict() for name, s in self.servers.items() if s.proc is not None}

    def stop(self) -> None:
        for server in list(self.servers.values()):
            server.stop()
        self.servers.clear()


def attach_from_worker_input(data: dict[str, dict[str, Any]] | None) -> None:
    for value in (data or {}).values():
        attach(ServerInfo.from_dict(value))


def process_tree_rss(pid: int) -> int | None:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        this = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(this)
        rss[this] = int(fields[21]) * page
    if pid not in rss:
        return None
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total
