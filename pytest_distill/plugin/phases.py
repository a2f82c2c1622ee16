"""Several managed servers, one at a time (runtime/rotation.py): the pytest side.

When a run evaluates two or more managed models (models.toml entries whose server the plugin
starts), they take turns: the items are ordered so each such model's items are contiguous
(other items first), the controller (or a serial run) starts a model's servers for its turn
and stops them after its last item, and each process that runs items waits, before an item of
a model, until that model's servers are up. Prefetching stays within the current turn. A
managed judge (--judge) is not a turn: its server runs throughout.

Under xdist the controller owns the servers and publishes their states in a run folder
(handed to workers in workerinput); each worker writes its collection's item -> model map
there, which the controller reads to know how many items each turn has.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.core.errors import ConfigError
from pytest_distill.plugin import api, lifecycle, xdist
from pytest_distill.plugin.collect import ExampleItem
from pytest_distill.plugin.evaluate import Target
from pytest_distill.plugin.state import RunState
from pytest_distill.runtime.rotation import Board, Conductor, Follower, stall_limit

TURN_SCHEDULERS = ("load", "worksteal")  # hand items out in collection order (runtime/rotation.py)
ITEMS_FILE = "items-{worker}.json"


@dataclass
class Turns:
    """The run's turns of managed servers: the controller (or a serial run) conducts them, whoever
    runs items follows them; `stall_s` is how long a follower waits with nothing moving."""

    conductor: Conductor | None = None
    follower: Follower | None = None
    stall_s: float = 0.0


TURNS_KEY = pytest.StashKey[Turns]()  # on the config, beside the RunState


def turns(state: RunState) -> Turns:
    return state.config.stash.setdefault(TURNS_KEY, Turns())


def model_of(item: pytest.Item) -> str | None:
    """The model an item evaluates: a folder item's, an @examples case's, or a plain test's
    `distill_model_name`; None for other tests."""
    if isinstance(item, ExampleItem):
        return item.model
    case = api.case_of(item)
    if case is not None:
        return case.model
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get(api.MODEL_NAME_FIXTURE) if callspec is not None else None
    return value if isinstance(value, str) else None


def _order(state: RunState) -> list[str]:
    run = turns(state)
    if run.conductor is not None:
        return run.conductor.order
    return run.follower.order if run.follower is not None else []


# --- the controller (or a serial run) ----------------------------------------------


def begin(state: RunState) -> None:
    """At session start: two or more evaluated managed models take turns (their servers are then
    not started with the others: lifecycle.start_servers skips `servers.later`)."""
    options = state.options
    if state.is_worker or options.collect_only or options.bench is not None:
        return
    if state.cache is not None and state.cache.replay_only:
        return  # replay never calls the model
    judges = {options.judge, *(e.name for e in state.evaluator.judge_entries)}
    managed = [e for e in state.models.entries.values() if e.name not in judges and state.servers.needs_server(e)]
    if len(managed) < 2:
        return
    config = state.config
    controller = xdist.is_controller(config)
    if controller:
        dist = str(getattr(config.option, "dist", "load") or "load")
        if dist not in TURN_SCHEDULERS:
            names = ", ".join(f"'{e.name}'" for e in managed)
            raise ConfigError(
                f"managed servers {names} run one at a time; under -n that needs --dist load (the default) "
                f"or worksteal, not --dist {dist} (it gives workers whole files, whose items span every model)"
            )
    folder = Path(tempfile.mkdtemp(prefix="pytest-distill-turns-")) if controller else None
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def newline() -> None:  # xdist's progress letters leave the line open (write_line ends serial ones)
        writer: Any = getattr(reporter, "_tw", None)
        if writer is not None and not getattr(reporter, "currentfspath", None) and writer.width_of_current_line:
            writer.line()

    def say(line: str) -> None:
        if reporter is not None:
            newline()
            reporter.write_line(line)

    def warn(text: str) -> None:
        if reporter is not None:
            newline()
            for line in text.splitlines():
                reporter.write_line(line, red=True)

    state.servers.later = {e.name for e in managed}
    logs = functools.cache(lambda: lifecycle.log_dir(state))  # one folder for every turn's logs
    conductor = Conductor(managed, state.servers, logs, Board(folder), say, warn)
    run = turns(state)
    run.conductor = conductor
    run.stall_s = stall_limit(managed, [*state.models.entries.values(), *state.evaluator.judge_entries])
    if not controller:  # a serial run follows its own turns
        run.follower = Follower(conductor.board, conductor.order, stall_s=run.stall_s, conductor=conductor)
    say(
        "pytest-distill: managed servers run one at a time, in this order: "
        + ", ".join(f"'{n}'" for n in conductor.order)
    )


def worker_input(state: RunState) -> dict[str, Any]:
    """What workers need to follow the turns (the controller's run folder)."""
    conductor = turns(state).conductor
    if conductor is None or conductor.board.folder is None:
        return {}
    return {
        xdist.TURNS_INPUT: {
            "order": conductor.order,
            "folder": str(conductor.board.folder),
            "controller_pid": os.getpid(),
            "stall_s": turns(state).stall_s,
        }
    }


def collected_on_worker(state: RunState, node: Any, ids: Sequence[str]) -> None:
    """xdist controller: a worker's collection; the first one tells each turn's item count."""
    conductor = turns(state).conductor
    if conductor is None or conductor.items is not None or conductor.board.folder is None:
        return
    worker = (getattr(node, "workerinput", None) or {}).get("workerid", "?")
    try:
        models = json.loads((conductor.board.folder / ITEMS_FILE.format(worker=worker)).read_text())
    except (OSError, ValueError):
        models = {}
    conductor.collected({nodeid: models[nodeid] for nodeid in ids if nodeid in models})


def reported(state: RunState, report: pytest.TestReport) -> None:
    """An item's last report (teardown; '???' is xdist's report of a crashed worker's item)."""
    conductor = turns(state).conductor
    if conductor is not None and report.when in ("teardown", "???"):
        conductor.finished_item(report.nodeid)


def end(state: RunState) -> None:
    """The run is over: followers still waiting give up (the pool stops the servers)."""
    conductor = turns(state).conductor
    if conductor is not None and not conductor.closed:
        conductor.close()


def cleanup(state: RunState) -> None:
    """After the workers are down: the run folder goes."""
    end(state)
    conductor = turns(state).conductor
    folder = conductor.board.folder if conductor is not None else None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# --- whoever runs items (a serial run, or an xdist worker) ------------------------------


def join(state: RunState) -> None:
    """On an xdist worker: follow the controller's turns."""
    data = xdist.worker_turns(state.config)
    if not data:
        return
    turns(state).follower = Follower(
        Board(Path(data["folder"])),
        list(data["order"]),
        stall_s=float(data["stall_s"]),
        controller_pid=int(data["controller_pid"]),
    )


def order_items(state: RunState, items: list[pytest.Item]) -> None:
    """Each turn's items contiguous, in turn order, after every other item (a stable sort: every
    worker collects the same order). A worker writes its item -> model map for the controller."""
    order = _order(state)
    if not order:
        return
    rank = {name: i + 1 for i, name in enumerate(order)}
    items[:] = sorted(items, key=lambda item: rank.get(model_of(item) or "", 0))
    follower = turns(state).follower
    if state.is_worker and follower is not None and follower.board.folder is not None:
        models = {item.nodeid: model for item in items if (model := model_of(item)) in rank}
        worker = state.config.workerinput.get("workerid", "?")  # type: ignore[attr-defined]
        path = follower.board.folder / ITEMS_FILE.format(worker=worker)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(models))
        os.replace(temporary, path)


def collected(state: RunState, items: Sequence[pytest.Item]) -> None:
    """A serial run's collection: the first turn starts."""
    run = turns(state)
    if run.conductor is not None and not state.is_worker and run.follower is not None:
        rank = set(run.conductor.order)
        models = {item.nodeid: model_of(item) for item in items}
        run.conductor.collected({nodeid: model for nodeid, model in models.items() if model in rank and model})


def before_item(state: RunState, item: pytest.Item) -> None:
    """Before an item of a turn's model: its servers up (waiting for the controller under xdist),
    or the reason there are none, which its requests then fail with."""
    follower = turns(state).follower
    if follower is None:
        return
    name = model_of(item)
    if name is None or name not in follower.order or name == follower.current:
        return
    previous, follower.current = follower.current, name
    infos, reason = follower.wait_for(name)
    pool = state.servers
    if state.is_worker:
        if previous is not None:
            pool.detach(previous)
        if reason is None:
            pool.attach(name, infos)
    if reason is not None and not any(info.exited() for info in pool.replicas_of(name)):
        pool.fail(name, reason)
    engine = state.evaluator.engine
    for changed in (previous, name):
        if changed is not None:
            engine.forget_model(changed)
    if not state.is_worker and reason is None:  # a serial run queues the whole turn now
        state.evaluator.prefetch(t for t in api.targets(item.session.items) if t.model == name)


def in_turn(state: RunState, targets: Iterable[Target]) -> list[Target]:
    """The targets whose requests may be sent now: not a turn's model, or the current turn's."""
    follower = turns(state).follower
    if follower is None:
        return list(targets)
    return [t for t in targets if t.model not in follower.order or t.model == follower.current]
