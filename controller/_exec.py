"""`waka ps:exec`: a command inside a running dyno, joined to the user as `waka run` is.

The controller finds the node that runs the dyno, opens a rendezvous under a new exec id, and
sends the node an ExecJob; the agent starts the command in the dyno's sandbox (its namespaces,
cgroup, user and environment) and dials in on Attach with that id. Keystrokes, window sizes,
signals, output and the exit then cross exactly as for an attached one-off dyno.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import trio

from waka.controller._attach import AttachHub, Rendezvous
from waka.controller._errors import Conflict, InvalidInput, NotFound
from waka.controller._fleet import Fleet
from waka.controller._formation import Formation
from waka.controller._logs import LogHub
from waka.controller._routes import STATE_WORDS
from waka.v1.agent_pb2 import AttachFrame, ControllerMessage, ExecJob
from waka.v1.common_pb2 import DynoState, WindowSize
from waka.v1.platform_pb2 import Dyno, RunSpec

DEFAULT_DYNO = "web.1"  # as `heroku ps:exec` without --dyno
DEFAULT_COMMAND = "bash"
# How long the node has to start the command and dial in.
JOIN_TIMEOUT = 30.0


@dataclass
class ExecSession:
    exec_id: str
    dyno: Dyno
    rendezvous: Rendezvous


class Execs:
    def __init__(self, formation: Formation, fleet: Fleet, attach: AttachHub, hub: LogHub) -> None:
        self._formation = formation
        self._fleet = fleet
        self._attach = attach
        self._hub = hub

    async def start(self, spec: RunSpec, user: str) -> ExecSession:
        target = spec.dyno.strip() or DEFAULT_DYNO
        ptype, _, idx = target.partition(".")
        if not ptype or not idx.isdigit():
            raise InvalidInput(f"{target!r} is not a dyno name like web.1 or worker.2.")
        named = [d for d in await self._formation.dynos(spec.app) if d.name == target]
        if not named:
            raise NotFound(f"No dyno {target} on {spec.app}.")
        running = [d for d in named if d.state == DynoState.DYNO_STATE_UP]
        if not running:
            raise Conflict(
                f"Dyno {target} of {spec.app} is not up"
                f" (it is {STATE_WORDS.get(named[-1].state, 'down')});"
                " exec needs a running dyno."
            )
        dyno = running[-1]
        session = self._fleet.session(self._fleet.node_of(dyno.id) or "")
        if session is None or session.closed:
            raise Conflict(f"The node that runs {target} ({dyno.node}) is not connected.")
        command = spec.command.strip() or DEFAULT_COMMAND
        exec_id = uuid.uuid4().hex
        rendezvous = self._attach.open(exec_id, session.node_id)
        job = ExecJob(
            exec_id=exec_id,
            dyno_id=dyno.id,
            command=command,
            tty=spec.tty,
            window=WindowSize(cols=spec.cols, rows=spec.rows),
            env=dict(spec.env),
        )
        if not session.send(ControllerMessage(exec=job)):
            self._attach.close(exec_id)
            raise Conflict(f"The node that runs {target} ({dyno.node}) is not connected.")
        self._hub.emit(spec.app, f"Starting exec session `{command}` in {target} by {user}")
        return ExecSession(exec_id, dyno, rendezvous)

    async def watch(self, execution: ExecSession) -> None:
        """Tells the user when the node never dials in, or leaves before the command ended (an
        exit it forwarded reaches the user first, and ends the call)."""
        rendezvous = execution.rendezvous
        with trio.move_on_after(JOIN_TIMEOUT):
            await rendezvous.agent_joined.wait()
        if not rendezvous.agent_joined.is_set():
            await rendezvous.to_user(
                AttachFrame(error=f"the node of {execution.dyno.name} did not start the command")
            )
            return
        await rendezvous.agent_left.wait()
        await rendezvous.to_user(
            AttachFrame(error=f"the node of {execution.dyno.name} went away before it ended")
        )

    def end(self, execution: ExecSession) -> None:
        self._attach.close(execution.exec_id)
