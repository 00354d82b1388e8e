"""Ships log lines to the controller in batches, and sends them again until they are stored.

Lines get a per-agent sequence number when they are emitted. The sequence starts at the wall clock
in microseconds, so numbers keep growing across agent restarts (the controller drops anything at or
below the highest number it has stored for this node) without a counter on disk.

The controller answers with two numbers (`LogAck`): how far it has *received* (the lines are in
the live stream) and how far it has *stored* (on disk, replays would be dropped). Flow control
counts against the first: at most `MAX_UNRECEIVED_BATCHES` batches are on the wire not yet
received, and lines emitted meanwhile wait and go together in the next batch. So a quiet stream
ships each line at once, a busy one ships ever bigger batches, no timer is involved, and the
controller never has more than the window queued for this node. Lines are forgotten (and the
dynos may release their output) only once stored; a slow disk therefore delays that, never the
live stream. Without the window, a fast trickle of one-line batches could outrun the controller's
per-batch cost and queue in gRPC's buffers, delaying every line by seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

import grpc
import trio

from waka.agent._wire import Controller, Outbox, responses
from waka.v1.agent_pb2 import LogAck
from waka.v1.common_pb2 import LogBatch, LogLine

log = logging.getLogger("waka.agent")

# Big batches spread each batch's round trip (and thread crossings) over many lines.
BATCH_LINES = 2000
BATCH_BYTES = 1024 * 1024
MAX_BUFFERED = 200_000
# Two: the controller publishes one batch while the next is already on its way.
MAX_UNRECEIVED_BATCHES = 2


class LogShipper:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_buffered: int = MAX_BUFFERED,
        max_unreceived_batches: int = MAX_UNRECEIVED_BATCHES,
    ) -> None:
        self._clock = clock
        self._seq = int(clock() * 1_000_000)
        self._max_buffered = max_buffered
        self._max_unreceived = max_unreceived_batches
        # Lines on the wire and not yet stored, and lines not sent yet; oldest first.
        self._inflight: deque[LogLine] = deque()
        self._unsent: deque[LogLine] = deque()
        # The last seq of each batch sent on the current stream and not yet received.
        self._unreceived: deque[int] = deque()
        self._stored = 0
        self._dropped = 0
        self._wakeup = trio.Event()
        self._ack_listeners: list[Callable[[int], None]] = []

    @property
    def last_seq(self) -> int:
        return self._seq

    def on_ack(self, listener: Callable[[int], None]) -> None:
        """Calls listener(seq) whenever every line up to seq is stored by the controller."""
        self._ack_listeners.append(listener)

    def emit(self, lines: Iterable[LogLine]) -> int:
        """Queues lines (their seq is set here) and returns the last seq given out. Never
        blocks: over the bound, the oldest lines go."""
        seq = self._seq
        unsent = self._unsent
        for line in lines:
            seq += 1
            line.seq = seq
            unsent.append(line)
        self._seq = seq
        overflow = len(self._inflight) + len(unsent) - self._max_buffered
        while overflow > 0:
            (self._inflight or unsent).popleft()
            self._dropped += 1
            overflow -= 1
        self._wakeup.set()
        return seq

    def _answered(self, ack: LogAck) -> None:
        # A controller that predates `received` answers each batch once it is stored.
        received = max(ack.received, ack.seq)
        if self._unreceived and self._unreceived[0] <= received:
            while self._unreceived and self._unreceived[0] <= received:
                self._unreceived.popleft()
            self._wakeup.set()  # the window has room again
        if ack.seq <= self._stored:
            return
        self._stored = ack.seq
        while self._inflight and self._inflight[0].seq <= ack.seq:
            self._inflight.popleft()
        for listener in self._ack_listeners:
            listener(ack.seq)

    async def run(self, controller: Controller) -> None:
        """Ships until cancelled, reconnecting with a short backoff when the stream breaks."""
        delay = 0.2
        while True:
            try:
                await self._ship(controller)
                delay = 0.2
            except* grpc.RpcError as errors:  # grouped when raised inside the stream's nursery
                log.debug("log stream broke: %s", errors.exceptions)
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _ship(self, controller: Controller) -> None:
        outbox: Outbox[LogBatch] = Outbox()
        call = controller.stub.ShipLogs(iter(outbox), metadata=controller.metadata)
        # Whatever was on the wire when the last stream broke goes again; the controller drops
        # what it had already stored.
        self._inflight.extend(self._unsent)
        self._unsent, self._inflight = self._inflight, deque()
        self._unreceived.clear()
        try:
            async with trio.open_nursery() as nursery:

                async def read_acks() -> None:
                    async for ack in responses(call):
                        self._answered(ack)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read_acks)
                while True:
                    while not self._unsent or len(self._unreceived) >= self._max_unreceived:
                        await self._wakeup.wait()
                        self._wakeup = trio.Event()
                    if self._dropped:
                        self._report_dropped()
                    outbox.put(self._next_batch())
        finally:
            outbox.close()

    def _next_batch(self) -> LogBatch:
        """Moves up to a batch's worth of lines from unsent to in flight."""
        unsent = self._unsent
        if len(unsent) <= BATCH_LINES:
            batch = list(unsent)
            unsent.clear()
        else:
            batch = [unsent.popleft() for _ in range(BATCH_LINES)]
        size = 0
        for i, line in enumerate(batch):
            size += len(line.text) + 64
            if size > BATCH_BYTES and i > 0:  # long lines: give the rest back
                unsent.extendleft(reversed(batch[i:]))
                del batch[i:]
                break
        self._inflight.extend(batch)
        self._unreceived.append(batch[-1].seq)
        return LogBatch(lines=batch)

    def _report_dropped(self) -> None:
        count, self._dropped = self._dropped, 0
        log.warning("dropped %d log lines while the controller was unreachable", count)
