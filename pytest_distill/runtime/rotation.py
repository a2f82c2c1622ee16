"""Several managed servers, one at a time: each model's server has its turn.

Two serving variants of one model (BF16 and FP8) would not fit on one GPU together. When a
run evaluates two or more managed models, their items are ordered so that each model's items
are contiguous (plugin/phases.py), and the `Conductor` (the controller, or a serial run)
starts a model's server(s) for its turn, stops them once the model's last item is reported,
then starts the next model's: never two of them alive at once.

The Conductor publishes each model's server state on a `Board`: in memory for a serial run,
a small JSON file in a run folder that xdist workers poll (the controller owns the servers;
workers only use them). A `Follower` (each process that runs items) waits, before an item of
a model, until the board says that model's server is up or could not be started; it gives up
with a one-line reason when the run has ended, the controller is gone, or nothing moved on the
board for `stall_s`. A model whose server could not be had gets an UnavailableServer: its
requests fail at once with the reason (errors, never a hang).

Why this cannot deadlock under xdist's `load` (and `worksteal`) scheduling: items are handed
out in collection order and each worker runs its queue in order, so every worker's queue is
sorted by turn. A worker waits only at an item of model M, whose turn begins once every item
of the turns before M is reported; those items are ahead of any item of M in whichever queue
holds them, so they run. (`loadfile`/`loadscope`/`loadgroup` give a worker whole files, whose
items span every model: plugin/phases.py refuses them.)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_distill.core.errors import DistillError
from pytest_distill.models.registry import ModelEntry
from pytest_distill.runtime.servers import ServerInfo, ServerPool

STATE_FILE = "servers.json"
POLL_S = 0.2
PROGRESS_EVERY_S = 1.0  # the board's progress time is rewritten at most this often

WAITING, UP, STOPPED, FAILED = "waiting", "up", "stopped", "failed"


class Board:
    """Where the conductor publishes the servers' states: a JSON file in `folder` (xdist), or
    memory (a serial run: the follower is in the same process)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._data: dict[str, Any] = {}

    def publish(self, data: dict[str, Any]) -> None:
        self._data = json.loads(json.dumps(data))
        if self.folder is None:
            return
        path = self.folder / STATE_FILE
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, path)  # readers never see half a file

    def read(self) -> dict[str, Any]:
        if self.folder is None:
            return self._data
        try:
            data = json.loads((self.folder / STATE_FILE).read_text())
        except FileNotFoundError:  # published before any worker started: gone means the run is over
            return {"closed": True}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def stall_limit(turns: Iterable[ModelEntry], every: Iterable[ModelEntry]) -> float:
    """How long a follower waits with nothing moving on the board: the longest start-up, plus the
    longest an item may take (each attempt's timeout and backoff, a judge call as much again)."""
    startup = max((e.startup_timeout_s for e in turns), default=600.0)
    item = max(((e.timeout_s + 60.0) * (e.max_retries + 1) for e in every), default=600.0)
    return startup + 2 * item + 60.0


class Conductor:
    """The controller's side: starts each model's servers for its turn, stops them after its last item."""

    def __init__(
        self,
        turns: list[ModelEntry],
        pool: ServerPool,
        log_dir: Callable[[], Path],
        board: Board,
        say: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.entries = {entry.name: entry for entry in turns}
        self.pool = pool
        self.log_dir = log_dir
        self.board = board
        self.say = say or (lambda line: None)
        self.warn = warn or self.say
        self.clock = clock
        self.items: dict[str, str] | None = None  # nodeid -> model, the collected items of the turns
        self.totals: dict[str, int] = dict.fromkeys(self.order, 0)
        self.finished: dict[str, set[str]] = {name: set() for name in self.order}
        self.states: dict[str, dict[str, Any]] = {name: {"state": WAITING} for name in self.order}
        self.current: str | None = None
        self.closed = False
        self.progress = clock()
        self._published = 0.0
        self.publish()

    @property
    def order(self) -> list[str]:
        return list(self.entries)

    def publish(self, force: bool = True) -> None:
        now = self.clock()
        if not force and now - self._published < PROGRESS_EVERY_S:
            return
        self._published = now
        self.board.publish(
            {"models": self.states, "current": self.current, "closed": self.closed, "progress": self.progress}
        )

    def remaining(self, name: str) -> int:
        return self.totals[name] - len(self.finished[name])

    # --- events ------------------------------------------------------------------
    def collected(self, items: Mapping[str, str]) -> None:
        """The run's items of the turns' models (nodeid -> model), once: the first turn starts."""
        if self.items is not None:
            return
        self.items = {nodeid: model for nodeid, model in items.items() if model in self.totals}
        for model in self.items.values():
            self.totals[model] += 1
        self.advance()

    def finished_item(self, nodeid: str) -> None:
        """An item's last report (teardown, or xdist's crash report): the turn ends after its last item."""
        self.progress = self.clock()
        model = (self.items or {}).get(nodeid)
        if model is None or nodeid in self.finished[model]:
            self.publish(force=False)
            return
        self.finished[model].add(nodeid)
        if model == self.current and self.remaining(model) <= 0:
            self.advance()
        else:
            self.publish(force=False)

    def ensure(self, name: str) -> None:
        """A serial run about to run an item of `name` out of turn: give it its turn now."""
        if self.current != name and self.states[name]["state"] == WAITING:
            self._stop_current()
            self._start(name)
            self.publish()

    def close(self) -> None:
        """The run ends: followers still waiting give up (the servers are stopped with the pool)."""
        self.closed = True
        self.publish()

    # --- turns -------------------------------------------------------------------
    def advance(self) -> None:
        """Stop the current model's servers, start the next model's that has items to run."""
        self._stop_current()
        for name in self.order:
            if self.closed or self.current is not None:
                break
            if self.states[name]["state"] == WAITING and self.remaining(name) > 0:
                self._start(name)
        self.publish()

    def _stop_current(self) -> None:
        name, self.current = self.current, None
        if name is None or self.states[name]["state"] != UP:
            return
        pid = self.pool.stop_one(name)
        self.states[name] = {"state": STOPPED}
        self.progress = self.clock()
        self.say(f"pytest-distill: stopped the server for '{name}' (pid {pid}): its items are done")

    def _start(self, name: str) -> None:
        """Start `name`'s servers; a start that fails makes its items errors (one line each), and
        the next model has its turn."""
        self.progress = self.clock()
        self.publish()  # waiting followers see that something moves
        try:
            self.pool.start_one(self.entries[name], self.log_dir(), self.say)
        except DistillError as exc:
            reason = str(exc).splitlines()[0]
            self.states[name] = {"state": FAILED, "error": reason}
            self.pool.fail(name, reason)
            self.warn(f"pytest-distill: {exc}\n(the items of '{name}' are errors; the run goes on)")
            self.progress = self.clock()
            return
        self.current = name
        self.states[name] = {"state": UP, "servers": [info.to_dict() for info in self.pool.replicas_of(name)]}
        self.progress = self.clock()


class Follower:
    """A process that runs items: before an item of a turn's model, make sure its server is up."""

    def __init__(
        self,
        board: Board,
        order: list[str],
        *,
        stall_s: float,
        controller_pid: int | None = None,
        conductor: Conductor | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.board = board
        self.order = list(order)
        self.stall_s = stall_s
        self.controller_pid = controller_pid
        self.conductor = conductor  # a serial run: it starts the turn itself when needed
        self.clock = clock
        self.sleep = sleep
        self.current: str | None = None

    def wait_for(self, name: str) -> tuple[list[ServerInfo], str | None]:
        """`name`'s servers once up, or ([], the reason there will be none)."""
        if self.conductor is not None:
            self.conductor.ensure(name)
        started = self.clock()
        while True:
            data = self.board.read()
            state = (data.get("models") or {}).get(name) or {}
            if state.get("state") == UP:
                return [ServerInfo.from_dict(info) for info in state.get("servers") or []], None
            if state.get("state") == FAILED:
                return [], str(state.get("error") or f"the server for '{name}' could not be started")
            if state.get("state") == STOPPED:
                return [], f"the server for '{name}' was stopped before this item ran (its turn was over)"
            if data.get("closed"):
                return [], f"the run ended before the server for '{name}' was started"
            if self.conductor is not None:  # serial: nothing else will move the board
                return [], f"the server for '{name}' was not started (turn of {self.conductor.current!r})"
            if self.controller_pid is not None and not _alive(self.controller_pid):
                return [], f"the pytest controller (pid {self.controller_pid}) is gone; no server for '{name}'"
            moved = max(float(data.get("progress") or 0.0), started)
            if self.clock() - moved > self.stall_s:
                return [], (
                    f"waited {self.clock() - started:.0f} s for the server for '{name}' and nothing moved for "
                    f"{self.stall_s:.0f} s (its turn comes after the items of {', '.join(self._before(name)) or 'no model'})"
                )
            self.sleep(POLL_S)

    def _before(self, name: str) -> list[str]:
        return [repr(n) for n in self.order[: self.order.index(name)]] if name in self.order else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
