"""Log drains: every line of an app, forwarded to up to 5 syslog or HTTPS endpoints.

    hub.publish ──offer()──▶ one bounded buffer per drain ──worker task──▶ sender ──▶ receiver

`offer` only appends to buffers, so ingest never waits on a drain. Each drain has its own trio
task: a drain that is slow or down waits (with timeouts and backoff) in its own task, and tails,
other drains and ingest go on. When its buffer overflows it drops its oldest lines and, at most
once per `report_interval`, says so in the app's stream with Logplex's L10 line. A batch is tried
`max_attempts` times (Logplex: 3); a receiver's 4xx other than 429 drops it at once.
"""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from waka.controller._drain_policy import (
    DEFAULT_BUFFER_LINES,
    Backoff,
    DrainBuffer,
    Outcome,
    overflow_text,
)
from waka.controller._drain_transport import (
    Batch,
    CertificateInvalid,
    Connect,
    DrainUnavailable,
    HttpSender,
    SyslogSender,
    connector,
    tls_context,
)
from waka.controller._drain_url import (
    MAX_DRAINS_PER_APP,
    Drain,
    DrainTarget,
    parse_drain_url,
)
from waka.controller._errors import InvalidInput
from waka.v1.common_pb2 import LogLine

log = logging.getLogger("waka.controller")

BATCH_LINES = 500  # about Logplex's 100 kB per HTTP request
MAX_ATTEMPTS = 3
REPORT_INTERVAL = 1.0

__all__ = ["Drain", "DrainInfo", "Drains", "parse_drain_url"]


class HubEmit(Protocol):
    def __call__(self, app: str, text: str, *, source: str = ..., dyno: str = ...) -> None: ...


class Sender(Protocol):
    async def send(self, batch: Batch) -> Outcome: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class DrainInfo:
    """What `drains` shows about one drain besides its URL."""

    id: str
    url: str
    token: str
    buffered: int
    delivered: int
    dropped: int
    last_error: str


def _is_loss_report(line: LogLine) -> bool:
    return line.dyno == "logplex" and line.text.startswith("Error L")


class DrainWorker:
    """Delivers one drain's buffer, batch after batch, for as long as the drain exists."""

    def __init__(
        self,
        app: str,
        drain: Drain,
        sender: Sender,
        emit: Callable[[str], None],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        backoff: Backoff,
        buffer_lines: int = DEFAULT_BUFFER_LINES,
        batch_lines: int = BATCH_LINES,
        max_attempts: int = MAX_ATTEMPTS,
        report_interval: float = REPORT_INTERVAL,
    ) -> None:
        self.app = app
        self.drain = drain
        self.buffer = DrainBuffer(buffer_lines, clock)
        self.scope = trio.CancelScope()
        self.delivered = 0
        self.dropped = 0
        self.last_error = ""
        self._sender = sender
        self._emit = emit
        self._sleep = sleep
        self._backoff = backoff
        self._batch_lines = batch_lines
        self._max_attempts = max_attempts
        self._report_interval = report_interval
        self._failures = 0

    def offer(self, lines: list[LogLine]) -> None:
        if len(self.buffer) + len(lines) > self.buffer.capacity:
            # A full buffer does not let in loss reports (this drain's or another's): each
            # would push out one more line and cause the next report, forever.
            lines = [line for line in lines if not _is_loss_report(line)]
        self.buffer.extend(lines)

    async def run(self) -> None:
        with self.scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._report_losses)
                    while True:
                        lines = await self.buffer.take(self._batch_lines)
                        await self._deliver(Batch(lines, uuid.uuid4().hex.upper()))
            finally:
                with trio.CancelScope(shield=True):
                    await self._sender.aclose()

    async def _deliver(self, batch: Batch) -> None:
        for _attempt in range(self._max_attempts):
            if self._failures:
                await self._sleep(self._backoff.delay(self._failures))
            try:
                outcome = await self._sender.send(batch)
            except DrainUnavailable as error:
                self._failed(error)
                continue
            if outcome is Outcome.SENT:
                self._failures = 0
                self.last_error = ""
                self.delivered += len(batch.lines)
                return
            if outcome is Outcome.DROP:
                self._failures = 0  # the receiver is up; it refused this batch, not the next
                self.last_error = "the receiver refused a batch (4xx); it was dropped"
                break
            self._failed(DrainUnavailable("the receiver asked to retry (429 or 5xx)"))
        self.buffer.lose(len(batch.lines))

    def _failed(self, error: DrainUnavailable) -> None:
        self._failures += 1
        if isinstance(error, CertificateInvalid) and self._failures == 1:
            self._emit(f"Error L14 (certificate validation error): {error}")
        if self._failures == 1 or str(error) != self.last_error:
            log.warning(
                "drain %s of %s (%s): %s",
                self.drain.id,
                self.app,
                parse_drain_url(self.drain.url).redacted(),
                error,
            )
        self.last_error = str(error)

    async def _report_losses(self) -> None:
        while True:
            await self.buffer.next_loss()
            # Gather the losses of a moment into one line: at most one L10 per interval.
            await self._sleep(self._report_interval)
            loss = self.buffer.take_loss()
            if loss is not None:
                self.dropped += loss[0]
                self._emit(overflow_text(*loss))


class Drains:
    """Every app's drains. `set_drains` and `offer` are called on the trio thread."""

    def __init__(
        self,
        hub_emit: HubEmit,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        backoff: Backoff | None = None,
        ca_file: str | None = None,
        connect: Connect | None = None,
        buffer_lines: int = DEFAULT_BUFFER_LINES,
        batch_lines: int = BATCH_LINES,
        max_attempts: int = MAX_ATTEMPTS,
        report_interval: float = REPORT_INTERVAL,
    ) -> None:
        self._emit = hub_emit
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._connect = connect
        self._ca_file = ca_file
        self._context: ssl.SSLContext | None = None
        self._buffer_lines = buffer_lines
        self._batch_lines = batch_lines
        self._max_attempts = max_attempts
        self._report_interval = report_interval
        self._workers: dict[str, list[DrainWorker]] = {}
        self._nursery: trio.Nursery | None = None
        self._unstarted: list[DrainWorker] = []
        self._closed = False

    def set_drains(self, app: str, drains: Sequence[Drain]) -> None:
        """Makes `drains` the app's drains: new ones start, missing ones stop (with whatever
        they still buffer), unchanged ones go on. Raises InvalidInput for a bad URL."""
        if len(drains) > MAX_DRAINS_PER_APP:
            raise InvalidInput(f"An app may have at most {MAX_DRAINS_PER_APP} drains.")
        targets = {drain: parse_drain_url(drain.url) for drain in drains}
        current = {worker.drain: worker for worker in self._workers.get(app, [])}
        for drain, worker in current.items():
            if drain not in targets:
                worker.scope.cancel()
        kept = [current[d] if d in current else self._worker(app, d, t) for d, t in targets.items()]
        if kept:
            self._workers[app] = kept
        else:
            self._workers.pop(app, None)

    def offer(self, lines: Iterable[LogLine]) -> None:
        """Hands lines to their apps' drains. Never blocks."""
        if not self._workers:
            return
        by_app: dict[str, list[LogLine]] = {}
        for line in lines:
            by_app.setdefault(line.app, []).append(line)
        for app, app_lines in by_app.items():
            for worker in self._workers.get(app, ()):
                worker.offer(app_lines)

    def info(self, app: str) -> list[DrainInfo]:
        return [
            DrainInfo(
                id=w.drain.id,
                url=w.drain.url,
                token=w.drain.token,
                buffered=len(w.buffer),
                delivered=w.delivered,
                dropped=w.dropped,
                last_error=w.last_error,
            )
            for w in self._workers.get(app, [])
        ]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs every drain's worker until cancelled (or `close`)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for worker in self._unstarted:
                nursery.start_soon(worker.run)
            self._unstarted = []
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stops every drain; what they still buffer is lost."""
        self._closed = True
        for workers in self._workers.values():
            for worker in workers:
                worker.scope.cancel()
        self._workers.clear()

    def _worker(self, app: str, drain: Drain, target: DrainTarget) -> DrainWorker:
        def emit(text: str) -> None:
            self._emit(app, text, source="waka", dyno="logplex")

        sender_type = HttpSender if target.is_http else SyslogSender
        worker = DrainWorker(
            app,
            drain,
            sender_type(target, drain.token, self._connector()),
            emit,
            clock=self._clock,
            sleep=self._sleep,
            backoff=self._backoff,
            buffer_lines=self._buffer_lines,
            batch_lines=self._batch_lines,
            max_attempts=self._max_attempts,
            report_interval=self._report_interval,
        )
        if self._closed:
            worker.scope.cancel()
        elif self._nursery is not None:
            self._nursery.start_soon(worker.run)
        else:
            self._unstarted.append(worker)
        return worker

    def _connector(self) -> Connect:
        if self._connect is not None:
            return self._connect
        if self._context is None:
            # Made once: loading the system's CAs takes tens of milliseconds.
            self._context = tls_context(self._ca_file)
        self._connect = connector(self._context)
        return self._connect
