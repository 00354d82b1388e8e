"""The connected agents: one session each, with what it last reported and a queue of what to send.

Agents are the truth for what runs. Each status they send lists everything they run, so the view
here is simply replaced, never patched; a reconnecting agent's first status rebuilds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from waka.v1.agent_pb2 import ControllerMessage, DynoStatus, Inventory, NodeStatus

# Assignments are full state and build jobs are few, so a deep queue means a stuck agent.
OUTBOX_DEPTH = 256


@dataclass
class AgentSession:
    node_id: str
    name: str
    inventory: Inventory
    connected_at: float
    slugs: set[str] = field(default_factory=set)
    dynos: dict[str, DynoStatus] = field(default_factory=dict)
    builds: set[str] = field(default_factory=set)
    status_seen: bool = False

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[ControllerMessage](OUTBOX_DEPTH)
        self.closed = False

    def send(self, message: ControllerMessage) -> bool:
        """Queues a message for the agent; False if the session is gone or hopelessly behind."""
        if self.closed:
            return False
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            # An agent this far behind is better reconnected (it then gets the full state again).
            self.close()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def next_message(self) -> ControllerMessage | None:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    def close(self) -> None:
        self.closed = True
        self._send.close()


class Fleet:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, AgentSession] = {}
        self._dyno_node: dict[str, str] = {}
        # When each node was last heard from, kept across disconnects (for liveness).
        self.heard: dict[str, float] = {}
        # Each node's liveness state (`ready`, `suspect`, ...), kept by the node monitor.
        self.states: dict[str, str] = {}
        # Nodes whose unknown dynos an operator said to stop (`waka nodes:adopt`).
        self.adopting: set[str] = set()

    def attach(self, node_id: str, name: str, inventory: Inventory) -> AgentSession:
        """Registers a new session; an older session of the same node is closed."""
        old = self._sessions.get(node_id)
        if old is not None:
            old.close()
        session = AgentSession(node_id, name, inventory, self._clock())
        self._sessions[node_id] = session
        self.heard_from(node_id)
        return session

    def heard_from(self, node_id: str) -> None:
        self.heard[node_id] = self._clock()

    def schedulable(self, node_id: str) -> bool:
        session = self._sessions.get(node_id)
        return (
            session is not None
            and not session.closed
            and self.states.get(node_id, "ready") == "ready"
        )

    def detach(self, session: AgentSession) -> bool:
        """Forgets a session if it is still the node's current one; True if it was."""
        session.close()
        if self._sessions.get(session.node_id) is not session:
            return False
        del self._sessions[session.node_id]
        for dyno_id in session.dynos:
            self._dyno_node.pop(dyno_id, None)
        return True

    def update_status(self, session: AgentSession, status: NodeStatus) -> None:
        for dyno_id in session.dynos:
            self._dyno_node.pop(dyno_id, None)
        session.dynos = {d.id: d for d in status.dynos}
        for dyno_id in session.dynos:
            self._dyno_node[dyno_id] = session.node_id
        session.builds = set(status.builds)
        if status.HasField("inventory"):
            session.inventory = status.inventory
        session.status_seen = True
        self.heard_from(session.node_id)

    def session(self, node_id: str) -> AgentSession | None:
        return self._sessions.get(node_id)

    def sessions(self) -> list[AgentSession]:
        return list(self._sessions.values())

    def node_of(self, dyno_id: str) -> str | None:
        return self._dyno_node.get(dyno_id)

    def dyno_status(self, dyno_id: str) -> DynoStatus | None:
        node_id = self._dyno_node.get(dyno_id)
        if node_id is None:
            return None
        session = self._sessions.get(node_id)
        return session.dynos.get(dyno_id) if session else None

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        self._dyno_node.clear()
