"""One request for an app, from the router to a web dyno and back.

The steps, and the H code each failure gets (all answer 503 with an error page, as on Heroku):
1. Maintenance mode: the maintenance page (H80). No dyno is asked.
2. Choose a dyno (`RoutingTable.choose`). None up: H14 if the formation has no web dynos, H10 if
   one crashed; otherwise the dynos are starting and the request waits for one, up to
   `boot_wait` (H20).
3. Connect, reusing an idle kept-alive connection when there is one. A connection that cannot be
   made (refused, unreachable, timed out) is retried on another dyno, up to MAX_CONNECT_ATTEMPTS;
   when all fail: H19 if one timed out, else H10 (nothing listens: the app is down). A request
   that may have reached the app is never retried, with one exception RFC 9110 allows: a
   bodiless idempotent request (GET, HEAD...) whose reused idle connection turned out closed
   before a single response byte came back is sent once more on a new connection; that close
   race is the dyno's keep-alive timeout, not the app failing.
4. Send the head, stream the body (in its own task, so a dyno may answer before reading it all).
5. The response head must come within `first_byte` of the request having been sent (H12); the
   dyno closing first is H13, a malformed head H17. Each later read restarts a rolling `idle`
   window (H15). The body is streamed to the client in chunks, never held whole; the dyno
   closing mid-body is H18, the client going away H27.
6. A 101 answer to an Upgrade request (WebSocket) is relayed, then bytes are spliced both ways
   until either side closes or both are quiet for `idle`.

Every request ends in exactly one router log line and one metrics observation.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from waka.controller._router_headers import (
    CONTINUE,
    client_response,
    expects_continue,
    simple_response,
    upstream_request,
)
from waka.controller._router_http1 import (
    CHUNKED,
    LAST_CHUNK,
    NO_BODY,
    UNTIL_CLOSE,
    Conn,
    PeerClosed,
    ProtocolError,
    RequestHead,
    ResponseHead,
    chunk,
    copy_chunked,
    copy_length,
    copy_until_close,
    parse_response_head,
    response_framing,
)
from waka.controller._router_log import (
    CLIENT_CLOSED,
    H10,
    H12,
    H13,
    H14,
    H15,
    H17,
    H18,
    H19,
    H20,
    H27,
    H28,
    H80,
    H99,
    RouterError,
    page_for,
    request_line,
)
from waka.controller._router_metrics import RouterMetrics
from waka.controller._router_pool import ConnectFailed, UpstreamPool, open_connection
from waka.controller._router_table import AppRoute, Backend, RoutingTable
from waka.controller._router_watchdog import Timer

log = logging.getLogger(__name__)

MAX_CONNECT_ATTEMPTS = 4
# How long the error page of a timed-out request (H12, H28) may take to go out; a client that
# does not take a few hundred bytes in that time is not reading.
TIMEOUT_PAGE_GRACE = 1.0
# RFC 9110 9.2.2; a bodiless request with one of these may be replayed on a fresh connection.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# (app, line): where router lines go; the controller sends them to the app's log stream.
LogSink = Callable[[str, str], None]


@dataclass(frozen=True)
class RouterTimeouts:
    """Seconds. Heroku's values are the defaults; tests use short ones."""

    connect: float = 5.0
    first_byte: float = 30.0  # H12
    idle: float = 55.0  # rolling, once the response started (H15); also uploads and WebSockets
    boot_wait: float = 30.0  # a request waiting for a starting dyno (H20)
    client_keepalive: float = 60.0  # an idle client connection between requests
    upstream_keepalive: float = 15.0  # an idle pooled connection to a dyno
    quarantine: float = 5.0  # a dyno that refused a connection is avoided this long


@dataclass(slots=True)
class AppRequest:
    """A parsed request for an app, with what the router adds to it."""

    head: RequestHead
    app: str
    host: str
    target: bytes  # origin-form, as sent to the dyno
    forwarded_for: bytes
    port: int
    proto: str
    received: float  # trio clock
    start_ms: int  # wall clock, X-Request-Start
    request_id: bytes
    keep_alive: bool  # the client allows another request on this connection
    upgrade: bool
    # The client connection's timer and cancel scope, which the exchange borrows for its own
    # deadlines (see `_exchange`).
    timer: Timer


@dataclass(slots=True)
class _Outcome:
    status: int = 0
    error: RouterError | None = None
    dyno: str = ""
    connect: float | None = None
    service: float | None = None
    sent: int | None = None
    keep_client: bool = False
    recorded: bool = False


def _only_cancelled(error: BaseException) -> bool:
    """True for a Cancelled, or a group of them (from a nursery), with nothing else in it."""
    if isinstance(error, trio.Cancelled):
        return True
    return isinstance(error, BaseExceptionGroup) and error.split(trio.Cancelled)[1] is None


class _ClientGone(Exception):
    """The client closed its connection (or broke its request body) mid-exchange."""


class _UpstreamGone(Exception):
    """Sending to the dyno failed."""


class _Exchange:
    """The state one request shares between its response task and its body-upload task."""

    __slots__ = (
        "body_done",
        "client_failed",
        "reading_client",
        "responded",
        "timer",
        "upstream_send_failed",
    )

    def __init__(self, timer: Timer) -> None:
        self.timer = timer  # the exchange's deadline: H12 before the response, H15 after
        self.body_done = False
        self.responded = False
        self.reading_client = False
        self.client_failed: Exception | None = None
        self.upstream_send_failed = False


class Proxy:
    def __init__(
        self,
        table: RoutingTable,
        pool: UpstreamPool,
        metrics: RouterMetrics,
        log_line: LogSink,
        timeouts: RouterTimeouts,
    ) -> None:
        self._table = table
        self._pool = pool
        self._metrics = metrics
        self._log = log_line
        self._timeouts = timeouts
        # The trio clock; `Router.serve` swaps in the clock's own method, one call instead of three.
        self.now: Callable[[], float] = trio.current_time

    async def handle(self, client: Conn, request: AppRequest, route: AppRoute) -> bool:
        """Serves one request for an app; True if the client connection may carry another."""
        self._metrics.started(request.app)
        outcome = _Outcome()
        sent_before = client.sent
        try:
            await self._handle(client, request, route, outcome)
        except _ClientGone:
            outcome.error = outcome.error or H27
            outcome.status = CLIENT_CLOSED
            outcome.keep_client = False
        except Exception:
            log.exception("router failed on %s %s", request.app, request.head.method)
            outcome.error, outcome.status, outcome.keep_client = H99, 503, False
            if client.sent == sent_before:
                with contextlib.suppress(_ClientGone):
                    await self._send_page(client, request, H99, close=True)
        finally:
            if not outcome.recorded:
                self._record(request, outcome)
        return outcome.keep_client

    # -- choosing and reaching a dyno -----------------------------------------------------------

    async def _handle(
        self, client: Conn, request: AppRequest, route: AppRoute, outcome: _Outcome
    ) -> None:
        if route.maintenance:
            await self._fail(client, request, outcome, H80)
            return
        table = self._table
        now = self.now
        connect_started = now()
        backend = table.choose(route, connect_started)
        if backend is None:
            error, backend = await self._wait_for_backend(request, route)
            if backend is None:
                await self._fail(client, request, outcome, error or H14)
                return
            connect_started = now()
        tried: list[str] = []
        timed_out = False
        upstream: Conn | None = None
        reused = False
        for _ in range(MAX_CONNECT_ATTEMPTS):
            if backend is None:
                current = table.route(request.app) or route
                backend = table.choose(current, now(), exclude=tried)
                if backend is None:
                    break
            address = backend.address
            table.acquire(address)
            upstream = self._pool.checkout(address, connect_started)
            reused = upstream is not None
            if upstream is None:
                try:
                    upstream = await open_connection(address, self._timeouts.connect)
                except ConnectFailed as failure:
                    table.release(address)
                    log.debug("router: %s", failure)
                    timed_out = timed_out or failure.timed_out
                    table.quarantine(address, now() + self._timeouts.quarantine)
                    tried.append(address)
                    backend = upstream = None
                    continue
            break
        connected = now()
        outcome.connect = connected - connect_started
        if upstream is None or backend is None:
            await self._fail(client, request, outcome, H19 if timed_out else H10)
            return
        outcome.dyno = backend.dyno
        try:
            await self._exchange(client, request, backend, upstream, reused, outcome, connected)
        finally:
            table.release(backend.address)

    async def _wait_for_backend(
        self, request: AppRequest, route: AppRoute
    ) -> tuple[RouterError | None, Backend | None]:
        """No dyno is up: an error to answer with, or (when some are starting) one that came up."""
        with trio.move_on_after(self._timeouts.boot_wait):
            while True:
                if route.maintenance:
                    return H80, None
                if not route.has_web_dynos:
                    return H14, None
                if route.crashed:
                    return H10, None
                await self._table.wait_changed()
                current = self._table.route(request.app)
                if current is None:
                    return H14, None
                route = current
                backend = self._table.choose(route, self.now())
                if backend is not None:
                    return None, backend
        return H20, None

    # -- one exchange with a dyno ---------------------------------------------------------------

    async def _exchange(
        self,
        client: Conn,
        request: AppRequest,
        backend: Backend,
        upstream: Conn,
        reused: bool,
        outcome: _Outcome,
        service_started: float,
    ) -> None:
        head = request.head
        timeouts = self._timeouts
        now = self.now
        upstream_head = upstream_request(
            head,
            target=request.target,
            forwarded_for=request.forwarded_for,
            proto=request.proto.encode(),
            port=b"%d" % request.port,
            start_ms=request.start_ms,
            request_id=request.request_id,
            upgrade=request.upgrade,
        )
        sent_before = client.sent
        keep_upstream = False
        # The exchange's deadlines (H12, then H15; H28 while reading the client's body) move the
        # client connection's timer instead of arming one in a new cancel scope: entering and
        # leaving a cancel scope was an eighth of the router's CPU per small request. When the
        # timer fires, the connection's scope is cancelled; the Cancelled is caught below, the
        # error page sent under a shield, and the connection gets a fresh scope for its next
        # request (`Router._serve_client`).
        timer = request.timer
        timer.at = service_started + timeouts.first_byte
        state = _Exchange(timer)
        try:
            try:
                if head.framing != NO_BODY:
                    keep_upstream = await self._exchange_with_body(
                        client, request, upstream, upstream_head, state, outcome, service_started
                    )
                else:
                    response = await self._send_bodiless(
                        client, request, backend, upstream, upstream_head, reused, state
                    )
                    if isinstance(response, Conn):  # replayed on a fresh connection
                        upstream = response
                        response = await self._response_head(client, request, upstream, state)
                    keep_upstream = await self._relay(
                        client, request, upstream, response, state, outcome, service_started
                    )
            except BaseException as error:
                # Only a cancellation this exchange caused (its timer fired, or the upload task
                # cancelled it because the client broke its body) is handled here; the router
                # shutting down, say, passes through.
                if not (timer.fired or state.client_failed) or not _only_cancelled(error):
                    raise
                if state.client_failed is None:
                    keep_upstream = False
                    outcome.keep_client = False
                    outcome.service = now() - service_started
                    if not state.responded:
                        timed_out = H28 if state.reading_client else H12
                        # The connection's scope is cancelled: only a shielded one may wait.
                        with trio.CancelScope(shield=True) as shield:
                            shield.deadline = now() + TIMEOUT_PAGE_GRACE
                            await self._fail(client, request, outcome, timed_out)
                        if shield.cancelled_caught:
                            outcome.keep_client = False
                    else:
                        outcome.error = H15
            if state.client_failed is not None:
                raise _ClientGone() from state.client_failed
        except _Failed as failed:
            keep_upstream = False
            outcome.service = now() - service_started
            if client.sent == sent_before:
                await self._fail(client, request, outcome, failed.error)
            else:
                outcome.error, outcome.keep_client = failed.error, False
        finally:
            timer.at = math.inf
            if outcome.sent is None and client.sent != sent_before:
                outcome.sent = client.sent - sent_before
            ended = now()
            if outcome.service is None:
                outcome.service = ended - service_started
            if keep_upstream and self._table.is_live(backend.address):
                self._pool.checkin(backend.address, upstream, ended)
            else:
                upstream.close()

    async def _exchange_with_body(
        self,
        client: Conn,
        request: AppRequest,
        upstream: Conn,
        upstream_head: bytes,
        state: _Exchange,
        outcome: _Outcome,
        service_started: float,
    ) -> bool:
        """Uploads the body in its own task while this one waits for and relays the response."""
        head = request.head
        if expects_continue(head):
            await self._to_client(client, CONTINUE)
        # If the dyno closed already, whatever it answered before closing is read below.
        with contextlib.suppress(_UpstreamGone):
            await self._to_upstream(upstream, upstream_head, state)
        failure: Exception | None = None
        keep_upstream = False
        async with trio.open_nursery() as nursery:
            if not state.upstream_send_failed:
                nursery.start_soon(self._upload, client, upstream, head, state)
            try:
                response = await self._response_head(client, request, upstream, state)
                keep_upstream = await self._relay(
                    client, request, upstream, response, state, outcome, service_started
                )
            except (_Failed, _ClientGone) as error:
                failure = error  # raised outside the nursery, not wrapped in an exception group
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if not state.body_done:
            # The dyno answered without reading the whole body: neither connection is at a
            # message boundary any more.
            outcome.keep_client = False
            return False
        return keep_upstream

    async def _send_bodiless(
        self,
        client: Conn,
        request: AppRequest,
        backend: Backend,
        upstream: Conn,
        upstream_head: bytes,
        reused: bool,
        state: _Exchange,
    ) -> ResponseHead | Conn:
        """Sends a request without a body and reads the response head.

        Returns a new connection instead when a reused one was found closed and the request
        may be replayed; the caller reads the response from it.
        """
        state.body_done = True
        try:
            await upstream.send(upstream_head)
            raw = await upstream.read_head()
        except (PeerClosed, ProtocolError) as error:
            raw, failure = None, error
        else:
            failure = None
            if raw is not None:
                return await self._response_head(client, request, upstream, state, raw)
        if not (reused and upstream.received == 0 and request.head.method in IDEMPOTENT):
            if isinstance(failure, ProtocolError):
                raise _Failed(H17) from failure
            raise _Failed(H13)
        upstream.close()
        try:
            fresh = await open_connection(backend.address, self._timeouts.connect)
        except ConnectFailed as error:
            raise _Failed(H19 if error.timed_out else H13) from error
        try:
            await fresh.send(upstream_head)
        except PeerClosed as error:
            fresh.close()
            raise _Failed(H13) from error
        return fresh

    async def _response_head(
        self,
        client: Conn,
        request: AppRequest,
        upstream: Conn,
        state: _Exchange,
        raw: bytes | None = None,
    ) -> ResponseHead:
        """The dyno's final response head (or 101); 1xx interim responses are passed on."""
        while True:
            if raw is None:
                try:
                    raw = await upstream.read_head()
                except PeerClosed as error:
                    raise _Failed(H13) from error
                except ProtocolError as error:
                    raise _Failed(H17) from error
                if raw is None:
                    raise _Failed(H13)
            try:
                response = parse_response_head(raw)
            except ProtocolError as error:
                raise _Failed(H17) from error
            raw = None
            if response.status >= 200 or response.status == 101:
                if response.status == 101 and not request.upgrade:
                    raise _Failed(H17)
                return response
            # The router answered any Expect itself, so a 100 from the dyno is redundant; other
            # interim responses (103 Early Hints) are the app's and go to HTTP/1.1 clients.
            if response.status != 100 and request.head.version == b"1.1":
                state.responded = True
                await self._to_client(
                    client,
                    client_response(
                        response, framing=NO_BODY, chunk_it=False, close=False, upgrade=False
                    ),
                )

    async def _relay(
        self,
        client: Conn,
        request: AppRequest,
        upstream: Conn,
        response: ResponseHead,
        state: _Exchange,
        outcome: _Outcome,
        service_started: float,
    ) -> bool:
        """Sends the response to the client; True if the dyno connection can be reused."""
        state.responded = True
        timeouts = self._timeouts
        state.timer.at = self.now() + timeouts.idle
        outcome.status = response.status
        if response.status == 101:
            return await self._splice(
                client, request, upstream, response, state, outcome, service_started
            )
        framing = response_framing(request.head.method, response)
        client_11 = request.head.version == b"1.1"
        keep_client = request.keep_alive
        if framing in (CHUNKED, UNTIL_CLOSE) and not client_11:
            keep_client = False  # an HTTP/1.0 client can only see the end as a close
        chunk_it = client_11 and framing in (CHUNKED, UNTIL_CLOSE)
        response_head = client_response(
            response, framing=framing, chunk_it=chunk_it, close=not keep_client, upgrade=False
        )
        buffered = upstream.buffer
        if framing >= 0 and len(buffered) >= framing:
            # The whole body is already here (the common small response): one send.
            body = bytes(buffered[:framing])
            del buffered[:framing]
            await self._to_client(client, response_head + body)
        else:
            await self._to_client(client, response_head)
            await self._relay_body(client, upstream, framing, chunk_it, state)
        outcome.keep_client = keep_client
        return (
            framing != UNTIL_CLOSE
            and response.version == b"1.1"
            and b"close" not in response.connection
            and not upstream.buffer
        )

    async def _relay_body(
        self, client: Conn, upstream: Conn, framing: int, chunk_it: bool, state: _Exchange
    ) -> None:
        idle = self._timeouts.idle
        timer = state.timer

        def progress() -> None:
            timer.at = self.now() + idle

        if chunk_it:

            async def sink(data: bytes) -> None:
                await self._to_client(client, chunk(data))

        else:

            async def sink(data: bytes) -> None:
                await self._to_client(client, data)

        try:
            if framing == CHUNKED:
                await copy_chunked(upstream, sink, progress)
            elif framing == UNTIL_CLOSE:
                await copy_until_close(upstream, sink, progress)
            elif framing > 0:
                await copy_length(upstream, sink, framing, progress)
        except (PeerClosed, ProtocolError) as error:
            raise _Failed(H18) from error
        if chunk_it:
            await self._to_client(client, LAST_CHUNK)

    async def _splice(
        self,
        client: Conn,
        request: AppRequest,
        upstream: Conn,
        response: ResponseHead,
        state: _Exchange,
        outcome: _Outcome,
        service_started: float,
    ) -> bool:
        response_head = client_response(
            response, framing=NO_BODY, chunk_it=False, close=False, upgrade=True
        )
        await self._to_client(client, response_head)
        # The upgrade is logged when it happens: a WebSocket may stay open for hours.
        outcome.service = self.now() - service_started
        outcome.sent = len(response_head)
        self._record(request, outcome)
        idle = self._timeouts.idle
        timer = state.timer

        async def pipe(source: Conn, target: Conn, done: trio.CancelScope) -> None:
            try:
                if source.buffer:
                    data = bytes(source.buffer)
                    source.buffer.clear()
                    await target.send(data)
                while data := await source.read_some():
                    timer.at = self.now() + idle
                    await target.send(data)
            except PeerClosed:
                pass
            done.cancel()  # either side closing ends the session

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream, nursery.cancel_scope)
            nursery.start_soon(pipe, upstream, client, nursery.cancel_scope)
        outcome.keep_client = False
        return False

    async def _upload(
        self, client: Conn, upstream: Conn, head: RequestHead, state: _Exchange
    ) -> None:
        """Streams the request body to the dyno, restarting the idle window on each chunk."""
        idle, first_byte = self._timeouts.idle, self._timeouts.first_byte
        timer = state.timer
        timer.at = self.now() + idle

        def progress() -> None:
            timer.at = self.now() + idle

        if head.framing == CHUNKED:

            async def sink(data: bytes) -> None:
                state.reading_client = False
                await self._to_upstream(upstream, chunk(data), state)
                state.reading_client = True

        else:

            async def sink(data: bytes) -> None:
                state.reading_client = False
                await self._to_upstream(upstream, data, state)
                state.reading_client = True

        state.reading_client = True
        try:
            if head.framing == CHUNKED:
                await copy_chunked(client, sink, progress)
                await self._to_upstream(upstream, LAST_CHUNK, state)
            else:
                await copy_length(client, sink, head.framing, progress)
        except _UpstreamGone:
            # The dyno stopped reading (it may have answered already); the response task decides.
            return
        except (PeerClosed, ProtocolError) as error:
            state.client_failed = error
            timer.scope.cancel()
            return
        # Not reset in a `finally`: when a timeout cancels this task while it waits for the
        # client, the flag must still say so, or a stalled upload is logged H12 instead of H28.
        state.reading_client = False
        state.body_done = True
        if not state.responded:
            timer.at = self.now() + first_byte

    # -- sending, failing and recording ---------------------------------------------------------

    async def _to_client(self, client: Conn, data: bytes) -> None:
        try:
            await client.send(data)
        except PeerClosed as error:
            raise _ClientGone() from error

    async def _to_upstream(self, upstream: Conn, data: bytes, state: _Exchange) -> None:
        try:
            await upstream.send(data)
        except PeerClosed as error:
            state.upstream_send_failed = True
            raise _UpstreamGone() from error

    async def _fail(
        self, client: Conn, request: AppRequest, outcome: _Outcome, error: RouterError
    ) -> None:
        """Answers with the error page for `error` (503), unless the client is already gone."""
        outcome.error, outcome.status = error, 503
        outcome.keep_client = request.keep_alive and request.head.framing == NO_BODY
        await self._send_page(client, request, error, close=not outcome.keep_client)

    async def _send_page(
        self, client: Conn, request: AppRequest, error: RouterError, *, close: bool
    ) -> None:
        page = simple_response(
            503, page_for(error), close=close, head_only=request.head.method == b"HEAD"
        )
        await self._to_client(client, page)

    def _record(self, request: AppRequest, outcome: _Outcome) -> None:
        outcome.recorded = True
        error = outcome.error
        self._metrics.finished(
            request.app,
            outcome.status,
            self.now() - request.received,
            None if error is None else error.code,
        )
        head = request.head
        reached = bool(outcome.dyno)
        self._log(
            request.app,
            request_line(
                method=head.method.decode("latin-1"),
                path=head.target.decode("latin-1"),
                host=request.host,
                request_id=request.request_id.decode("latin-1"),
                fwd=request.forwarded_for.decode("latin-1"),
                dyno=outcome.dyno,
                connect=outcome.connect if reached else None,
                service=outcome.service if reached else None,
                status=outcome.status,
                sent=(outcome.sent or 0) if reached else None,
                protocol=request.proto,
                error=error,
            ),
        )


class _Failed(Exception):
    """The exchange with the dyno failed with `error` (an H code)."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(f"{error.code} {error.desc}")
        self.error = error
