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

Each emitted group of lines is serialized once, when it is emitted, and kept as bytes until it is
stored: a batch on the wire is the concatenation of such chunks (serialized protobuf messages
concatenate into one message whose repeated fields hold all their elements), so lines are never
copied from message to message on the way out, and a buffered line costs its bytes only.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
SHIP_LOGS = "/waka.v1.Agent/ShipLogs"


@dataclass(frozen=True)
class _Chunk:
    """Lines emitted together: their last seq, how many, and the serialized LogBatch."""

    last_seq: int
    lines: int
    data: bytes


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
        # Chunks on the wire and not yet stored, and chunks not sent yet; oldest first.
        self._inflight: deque[_Chunk] = deque()
        self._unsent: deque[_Chunk] = deque()
        self._buffered = 0  # lines in both
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

    @property
    def next_seq(self) -> int:
        """The seq the next line emitted gets."""
        return self._seq + 1

    def emit(self, lines: LogBatch | Iterable[LogLine], *, numbered: bool = False) -> int:
        """Queues lines (their seq is set here) and returns the last seq given out. A LogBatch
        is taken over as it is (the cheap way for many lines); `numbered` says its lines have
        their seqs already, from `next_seq` on (set while building it, which saves a pass over
        the lines). Never blocks: over the bound, the oldest lines go."""
        batch = lines if isinstance(lines, LogBatch) else LogBatch(lines=list(lines))
        if not batch.lines:
            return self._seq
        seq = self._seq
        if numbered:
            seq += len(batch.lines)
        else:
            for line in batch.lines:
                seq += 1
                line.seq = seq
        self._seq = seq
        data = batch.SerializeToString()
        # One read of a dyno's output is at most 256 kB of text, so nearly always one chunk; cut
        # only by bytes (line by line in Python, the costly way), never just for its line count.
        if len(data) <= BATCH_BYTES:
            self._unsent.append(_Chunk(seq, len(batch.lines), data))
        else:  # e.g. everything a stopped dyno wrote last: cut to batch size
            self._unsent.extend(_split(batch))
        self._buffered += len(batch.lines)
        while self._buffered > self._max_buffered and len(self._inflight) + len(self._unsent) > 1:
            dropped = (self._inflight or self._unsent).popleft()
            self._buffered -= dropped.lines
            self._dropped += dropped.lines
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
        while self._inflight and self._inflight[0].last_seq <= ack.seq:
            self._buffered -= self._inflight.popleft().lines
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
        outbox: Outbox[bytes] = Outbox()
        # Requests go as the bytes of a LogBatch, already serialized (see the module docstring).
        ship_logs = controller.channel.stream_stream(
            SHIP_LOGS, request_serializer=None, response_deserializer=LogAck.FromString
        )
        call = ship_logs(iter(outbox), metadata=controller.metadata)
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

    def _next_batch(self) -> bytes:
        """Moves up to a batch's worth of chunks from unsent to in flight; their bytes."""
        unsent = self._unsent
        chunk = unsent.popleft()
        chunks = [chunk]
        lines, size = chunk.lines, len(chunk.data)
        while unsent:
            chunk = unsent[0]
            if lines + chunk.lines > BATCH_LINES or size + len(chunk.data) > BATCH_BYTES:
                break
            chunks.append(unsent.popleft())
            lines += chunk.lines
            size += len(chunk.data)
        self._inflight.extend(chunks)
        self._unreceived.append(chunks[-1].last_seq)
        return chunks[0].data if len(chunks) == 1 else b"".join(c.data for c in chunks)

    def _report_dropped(self) -> None:
        count, self._dropped = self._dropped, 0
        log.warning("dropped %d log lines while the controller was unreachable", count)


def _split(batch: LogBatch) -> list[_Chunk]:
    """Chunks of at most BATCH_LINES lines and about BATCH_BYTES (a line is at most 10 kB)."""
    chunks: list[_Chunk] = []
    part = LogBatch()
    size = 0
    for line in batch.lines:
        line_size = line.ByteSize() + 5  # and its tag and length
        if part.lines and (len(part.lines) >= BATCH_LINES or size + line_size > BATCH_BYTES):
            chunks.append(_Chunk(part.lines[-1].seq, len(part.lines), part.SerializeToString()))
            part = LogBatch()
            size = 0
        part.lines.append(line)
        size += line_size
    chunks.append(_Chunk(part.lines[-1].seq, len(part.lines), part.SerializeToString()))
    return chunks
