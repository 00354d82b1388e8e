"""A small HTTP/1.1 server on trio and h11: keep-alive, streamed request and response bodies.

A handler receives a `Request` (method, target, headers, a body it reads chunk by chunk) and a
`ResponseWriter` (status and headers once, then body writes sent as they happen, chunked when no
length is given). Nothing is buffered beyond one chunk in either direction, which is what lets a
CGI program's output (git's `remote:` lines during a push) reach the client live.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import h11
import trio

log = logging.getLogger(__name__)

RECEIVE_SIZE = 64 * 1024
# After a handler returns without reading the whole request body, the server reads and drops
# this much of it so the connection can carry the next request; beyond that, closing is cheaper.
DRAIN_LIMIT = 1024 * 1024
DRAIN_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 75.0


class ClientDisconnected(Exception):
    """The client went away (or broke the protocol) before the exchange was complete."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    # Lowercased names; values decoded as latin-1, which maps HTTP's bytes one to one.
    headers: Sequence[tuple[str, str]]
    body: RequestBody
    client_address: str

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


class RequestBody:
    """The request body, read in chunks as the client sends them."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._complete = False

    @property
    def complete(self) -> bool:
        return self._complete

    async def receive_some(self) -> bytes:
        """The next chunk of the body; b"" once the body is complete.

        Raises ClientDisconnected when the client stops before the end of the body.
        """
        if self._complete:
            return b""
        chunk = await self._connection.next_body_chunk()
        if not chunk:
            self._complete = True
        return chunk


class ResponseWriter:
    """Sends one response: `start` once, then any number of `write`s.

    Both raise ClientDisconnected when the client has gone away.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(
        self, status: int, headers: Sequence[tuple[str, str]], reason: str = ""
    ) -> None:
        """Sends the status line and headers. Without a Content-Length the body is chunked."""
        if self._started:
            raise RuntimeError("the response was already started")
        self._started = True
        await self._connection.send(
            h11.Response(
                status_code=status,
                headers=[
                    (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
                ],
                reason=reason.encode("latin-1"),
            )
        )

    async def write(self, data: bytes) -> None:
        """Sends part of the body now. Empty writes are skipped (they would end a chunked body)."""
        if not self._started:
            raise RuntimeError("write() before start()")
        if data:
            await self._connection.send(h11.Data(data=data))


Handler = Callable[[Request, ResponseWriter], Awaitable[None]]


async def send_text(
    response: ResponseWriter,
    status: int,
    text: str,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> None:
    """A complete plain-text response."""
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra_headers,
    ]
    await response.start(status, headers)
    await response.write(body)


async def serve_http(
    handler: Handler,
    listeners: Sequence[trio.SocketListener],
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    task_status: trio.TaskStatus[Sequence[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves HTTP/1.1 on `listeners` until cancelled, one task per connection.

    `idle_timeout` bounds how long a kept-alive connection may wait for its next request. A
    request being handled has no time limit: a push can build for minutes.
    """

    async def serve_connection(stream: trio.SocketStream) -> None:
        await _Connection(stream, handler, idle_timeout).serve()

    await trio.serve_listeners(serve_connection, list(listeners), task_status=task_status)


class _CloseConnection(Exception):
    """Ends a connection whose state does not allow another request."""


class _Connection:
    def __init__(self, stream: trio.SocketStream, handler: Handler, idle_timeout: float) -> None:
        self._stream = stream
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._h11 = h11.Connection(h11.SERVER)
        # A handler may read the body in one task while it writes the response in another; the
        # 100-continue sent on the first read must not interleave with a response write.
        self._send_lock = trio.Lock()
        self._client_address = _peer_address(stream)

    async def serve(self) -> None:
        try:
            while True:
                with trio.move_on_after(self._idle_timeout) as idle:
                    head = await self._next_request_head()
                if idle.cancelled_caught or head is None:
                    return
                await self._handle(head)
                if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                    return
                self._h11.start_next_cycle()
        except (ClientDisconnected, _CloseConnection) as error:
            log.debug("HTTP connection from %s ended: %s", self._client_address, error)
        except Exception:
            # One broken exchange (a handler breaking the protocol, say) must not take the
            # whole server down with it.
            log.exception("HTTP connection from %s failed", self._client_address)
        finally:
            await self._stream.aclose()

    async def _next_request_head(self) -> h11.Request | None:
        try:
            event = await self._next_event()
        except h11.RemoteProtocolError as error:
            # h11 still lets us answer a malformed request before closing.
            response = ResponseWriter(self)
            await send_text(response, error.error_status_hint, f"Bad request: {error}\n")
            await self.send(h11.EndOfMessage())
            return None
        return event if isinstance(event, h11.Request) else None

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._h11.next_event()
            if event is h11.PAUSED:
                raise _CloseConnection("the client pipelined a request before a response ended")
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                data = b""  # a reset reads like a close; h11 decides whether that was too early
            self._h11.receive_data(data)

    async def next_body_chunk(self) -> bytes:
        async with self._send_lock:
            if self._h11.they_are_waiting_for_100_continue:
                await self._send_unlocked(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
        try:
            event = await self._next_event()
        except h11.RemoteProtocolError as error:
            raise ClientDisconnected(f"broken request body: {error}") from error
        if isinstance(event, h11.Data):
            # h11 never yields an empty Data event, so b"" stays the end-of-body marker.
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return b""
        raise ClientDisconnected(f"the request body ended with {type(event).__name__}")

    async def send(self, event: h11.Event) -> None:
        async with self._send_lock:
            await self._send_unlocked(event)

    async def _send_unlocked(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if not data:
            return
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise ClientDisconnected(f"sending to the client failed: {error}") from error

    async def _handle(self, head: h11.Request) -> None:
        request = Request(
            method=head.method.decode("ascii"),
            target=head.target.decode("latin-1"),
            headers=[
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in head.headers
            ],
            body=RequestBody(self),
            client_address=self._client_address,
        )
        response = ResponseWriter(self)
        try:
            await self._handler(request, response)
        except Exception as error:
            if _caused_by_disconnect(error):
                raise ClientDisconnected("the client went away during a request") from error
            log.exception("HTTP handler failed on %s %s", request.method, _path_only(request))
            if response.started:
                # The client already has part of this response; ending the connection without
                # the final chunk is the only way left to tell it the response is incomplete.
                raise _CloseConnection("the handler failed mid-response") from error
            await send_text(response, 500, "Internal server error.\n")
        if not response.started:
            log.error("HTTP handler gave no response to %s", _path_only(request))
            await send_text(response, 500, "Internal server error.\n")
        await self.send(h11.EndOfMessage())
        await self._drain_unread_body(request.body)

    async def _drain_unread_body(self, body: RequestBody) -> None:
        if self._h11.their_state is not h11.SEND_BODY:
            return
        drained = 0
        # Whatever is left unread when this gives up makes serve() close the connection.
        with trio.move_on_after(DRAIN_TIMEOUT):
            while drained <= DRAIN_LIMIT and (chunk := await body.receive_some()):
                drained += len(chunk)


def _caused_by_disconnect(error: BaseException) -> bool:
    """True when `error` is, or is a group made only of, ClientDisconnected errors."""
    if isinstance(error, BaseExceptionGroup):
        return all(_caused_by_disconnect(inner) for inner in error.exceptions)
    return isinstance(error, ClientDisconnected)


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _path_only(request: Request) -> str:
    # Query strings stay out of logs: they are the usual place for secrets in URLs.
    return request.target.partition("?")[0]
