"""Ships log lines to the controller in batches, and sends them again until they are acknowledged.

Lines get a per-agent sequence number when they are emitted. The sequence starts at the wall clock
in microseconds, so numbers keep growing across agent restarts (the controller drops anything at or
below the highest number it has stored for this node) without a counter on disk.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

import grpc
import trio

from waka.agent._wire import Controller, Outbox, responses
from waka.v1.common_pb2 import LogBatch, LogLine

log = logging.getLogger("waka.agent")

# Big batches spread each batch's round trip (and thread crossings) over many lines.
BATCH_LINES = 2000
BATCH_BYTES = 1024 * 1024
MAX_BUFFERED = 200_000


class LogShipper:
    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_buffered: int = MAX_BUFFERED
    ) -> None:
        self._clock = clock
        self._seq = int(clock() * 1_000_000)
        self._max_buffered = max_buffered
        # Lines on the wire and not yet acknowledged, and lines not sent yet; oldest first.
        self._inflight: deque[LogLine] = deque()
        self._unsent: deque[LogLine] = deque()
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
        for line in lines:
            self._seq += 1
            line.seq = self._seq
            self._unsent.append(line)
        overflow = len(self._inflight) + len(self._unsent) - self._max_buffered
        while overflow > 0:
            (self._inflight or self._unsent).popleft()
            self._dropped += 1
            overflow -= 1
        self._wakeup.set()
        return self._seq

    def _acknowledge(self, seq: int) -> None:
        while self._inflight and self._inflight[0].seq <= seq:
            self._inflight.popleft()
        for listener in self._ack_listeners:
            listener(seq)

    async def run(self, controller: Controller) -> None:
        """Ships until cancelled, reconnecting with a short backoff when the stream breaks."""
        delay = 0.2
        while True:
            try:
                await self._ship(controller)
                delay = 0.2
            except grpc.RpcError as error:
                log.debug("log stream broke: %s", error)
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _ship(self, controller: Controller) -> None:
        outbox: Outbox[LogBatch] = Outbox()
        call = controller.stub.ShipLogs(iter(outbox), metadata=controller.metadata)
        # Whatever was on the wire when the last stream broke goes again; the controller drops
        # what it had already stored.
        self._inflight.extend(self._unsent)
        self._unsent, self._inflight = self._inflight, deque()
        try:
            async with trio.open_nursery() as nursery:

                async def read_acks() -> None:
                    async for ack in responses(call):
                        self._acknowledge(ack.seq)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read_acks)
                while True:
                    while not self._unsent:
                        await self._wakeup.wait()
                        self._wakeup = trio.Event()
                    if self._dropped:
                        self._report_dropped()
                    batch = []
                    size = 0
                    while self._unsent and len(batch) < BATCH_LINES and size < BATCH_BYTES:
                        line = self._unsent.popleft()
                        batch.append(line)
                        size += len(line.text) + 64
                    self._inflight.extend(batch)
                    outbox.put(LogBatch(lines=batch))
        finally:
            outbox.close()

    def _report_dropped(self) -> None:
        count, self._dropped = self._dropped, 0
        log.warning("dropped %d log lines while the controller was unreachable", count)
