"""Where `waka run` meets its dyno: the controller joins the user's Run stream to the agent's
Attach stream for the same dyno, frame by frame, in both directions.

The user's side opens first (it creates the one-off dyno); the agent dials in once it has the
assignment. Each side is a gRPC stream served on its own thread; frames cross into trio here and
wait in bounded channels, so a slow reader slows its writer instead of growing memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import trio

from waka.v1.agent_pb2 import AttachFrame

DEPTH = 64


@dataclass
class Rendezvous:
    dyno_id: str
    node_id: str
    # User -> dyno (stdin, resize, signal) and dyno -> user (stdout, stderr, exit_code, error).
    down: tuple[trio.MemorySendChannel[AttachFrame], trio.MemoryReceiveChannel[AttachFrame]] = (
        field(default_factory=lambda: trio.open_memory_channel[AttachFrame](DEPTH))
    )
    up: tuple[trio.MemorySendChannel[AttachFrame], trio.MemoryReceiveChannel[AttachFrame]] = field(
        default_factory=lambda: trio.open_memory_channel[AttachFrame](DEPTH)
    )
    agent_joined: trio.Event = field(default_factory=trio.Event)
    # The agent's stream ended (after the exit it forwarded, if it sent one).
    agent_left: trio.Event = field(default_factory=trio.Event)

    async def to_dyno(self, frame: AttachFrame) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self.down[0].send(frame)

    async def to_user(self, frame: AttachFrame) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self.up[0].send(frame)

    async def next_for_dyno(self) -> AttachFrame | None:
        try:
            return await self.down[1].receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def next_for_user(self) -> AttachFrame | None:
        try:
            return await self.up[1].receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    def close(self) -> None:
        for send, _ in (self.down, self.up):
            send.close()


class AttachHub:
    def __init__(self) -> None:
        self._open: dict[str, Rendezvous] = {}

    def open(self, dyno_id: str, node_id: str) -> Rendezvous:
        rendezvous = Rendezvous(dyno_id, node_id)
        self._open[dyno_id] = rendezvous
        return rendezvous

    def join(self, dyno_id: str, node_id: str) -> Rendezvous | None:
        """The agent's side arrives; only the node the dyno was assigned to may attach."""
        rendezvous = self._open.get(dyno_id)
        if rendezvous is None or rendezvous.node_id != node_id:
            return None
        if rendezvous is not None:
            rendezvous.agent_joined.set()
        return rendezvous

    def close(self, dyno_id: str) -> None:
        rendezvous = self._open.pop(dyno_id, None)
        if rendezvous is not None:
            rendezvous.close()

    def close_all(self) -> None:
        for dyno_id in list(self._open):
            self.close(dyno_id)
