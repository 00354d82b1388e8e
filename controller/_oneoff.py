"""One-off dynos: `waka run`, `waka run:detached` and release phase.

A one-off dyno is a dyno row like any other (so it is assigned, reported and listed the same way),
marked `oneoff`, never part of the formation and never restarted. The agent runs it once and keeps
reporting it, with its exit code, until the controller drops it from the assignment; that report is
how the controller learns it ended.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import trio
from sqlite_utils import Database

from waka.controller._apps import find_app
from waka.controller._errors import Conflict, InvalidInput, Unavailable
from waka.controller._fleet import Fleet
from waka.controller._reconcile import APP_PRIVATE_NETWORK, Reconciler, next_dyno_seq
from waka.controller._sizes import DEFAULT_SIZE, check_size
from waka.controller._store import Store
from waka.v1.agent_pb2 import DynoStatus
from waka.v1.common_pb2 import DynoState

# A one-off dyno that has ended (or could not start) reports one of these.
ENDED = frozenset({DynoState.DYNO_STATE_DOWN, DynoState.DYNO_STATE_CRASHED})


@dataclass(frozen=True)
class OneOff:
    id: str
    app: str
    name: str
    node_id: str
    release: int
    command: str


def resolve_command(command: str, process_types: Mapping[str, str]) -> str:
    """`waka run web --port 1` runs the Procfile's web command with the extra words appended."""
    words = shlex.split(command) if command.strip() else []
    if not words:
        raise InvalidInput("Nothing to run: give a command, e.g. `waka run bash`.")
    first, rest = words[0], command.strip()[len(words[0]) :].strip()
    if first in process_types and first != "release":
        return f"{process_types[first]} {rest}".strip()
    return command.strip()


class OneOffs:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        reconciler: Reconciler,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._reconciler = reconciler
        self._clock = clock
        self._ended: dict[str, trio.Event] = {}
        self._exit_codes: dict[str, int] = {}
        self._nodes: dict[str, str] = {}

    async def create(
        self,
        app_name: str,
        command: str,
        *,
        kind: str = "run",
        release: int = 0,
        size: str = "",
        env: Mapping[str, str] | None = None,
        attach: bool = False,
        tty: bool = False,
        window: tuple[int, int] = (0, 0),
        timeout_seconds: int = 0,
    ) -> OneOff:
        """Records a one-off dyno and places it; `launch` then sends it to its node."""
        if size:
            check_size(size)
        for key in env or {}:
            if not key or "=" in key or "\0" in key:
                raise InvalidInput(f"Invalid environment variable name {key!r}.")
        view = self._reconciler.fleet_view()

        def insert(db: Database) -> OneOff:
            app = find_app(db, app_name)
            version = release or app.current_release
            row = db.execute(
                "SELECT process_types, slug_sha256 FROM releases WHERE app_id = ? AND version = ?",
                (app.id, version),
            ).fetchone()
            if not version or row is None or not row[1]:
                raise Conflict(f"{app_name} has no release to run: deploy it first.")
            full_command = (
                command if kind == "release" else resolve_command(command, json.loads(row[0]))
            )
            (idx,) = db.execute(
                "UPDATE apps SET last_oneoff = last_oneoff + 1 WHERE id = ? RETURNING last_oneoff",
                (app.id,),
            ).fetchone()
            chosen_size = size or DEFAULT_SIZE
            node_id, reason = self._reconciler.place_one(db, view, app.id, kind, chosen_size)
            if node_id is None:
                raise Unavailable(f"Cannot start a one-off dyno: {reason}.")
            dyno_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id, desired,"
                " created_at, seq, size, oneoff, command, env, attach, tty, timeout_seconds,"
                " tty_cols, tty_rows, private_network)"
                " VALUES (?, ?, ?, ?, ?, ?, 'run', ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?,"
                f" {APP_PRIVATE_NETWORK})",
                (
                    dyno_id,
                    app.id,
                    kind,
                    idx,
                    version,
                    node_id,
                    self._clock(),
                    next_dyno_seq(db),
                    chosen_size,
                    full_command,
                    json.dumps(dict(env or {})),
                    int(attach),
                    int(tty),
                    timeout_seconds,
                    window[0],
                    window[1],
                    app.id,
                ),
            )
            return OneOff(dyno_id, app_name, f"{kind}.{idx}", node_id, version, full_command)

        oneoff = await self._store.write(insert)
        self._ended[oneoff.id] = trio.Event()
        self._nodes[oneoff.id] = oneoff.node_id
        return oneoff

    async def launch(self, oneoff: OneOff) -> None:
        await self._reconciler.push_node(oneoff.node_id)

    def observe(self, statuses: Iterable[DynoStatus]) -> None:
        """Called with every status report: notices one-off dynos that have ended."""
        for status in statuses:
            event = self._ended.get(status.id)
            if event is not None and status.state in ENDED and not event.is_set():
                self._exit_codes[status.id] = status.exit_code
                event.set()

    async def wait(self, oneoff: OneOff) -> int:
        """The exit code once the dyno has ended (-1: it never ran, or its node was lost)."""
        event = self._ended.get(oneoff.id)
        if event is not None:
            await event.wait()
        return self._exit_codes.get(oneoff.id, -1)

    async def remove(self, oneoff: OneOff) -> None:
        """Stops the dyno if it still runs and lets its node forget it."""
        self._ended.pop(oneoff.id, None)
        self._exit_codes.pop(oneoff.id, None)
        self._nodes.pop(oneoff.id, None)
        await self._store.write(
            lambda db: db.execute("UPDATE dynos SET desired = 'stop' WHERE id = ?", (oneoff.id,))
        )
        await self._reconciler.push_node(oneoff.node_id)

    def node_lost(self, node_id: str) -> None:
        """One-off dynos on a node that went away are reported ended, with no exit code."""
        for dyno_id, node in self._nodes.items():
            event = self._ended.get(dyno_id)
            if node == node_id and event is not None and not event.is_set():
                self._exit_codes[dyno_id] = -1
                event.set()
