"""The wire side of drains: a TCP (or TLS) connection per drain, and what is sent on it.

Both senders are trio code on the controller's loop (no threads): a drain waiting on a slow
receiver waits in its own task, with timeouts, and nothing else waits with it.

- `SyslogSender` writes octet-counted RFC 5424 frames on one long-lived connection.
- `HttpSender` POSTs logplex-1 batches with h11 on a kept-alive connection.

Failures to connect, send or read become `DrainUnavailable` (the worker retries with backoff);
a TLS certificate that does not verify is the `CertificateInvalid` kind of it (Logplex's L14).
"""

from __future__ import annotations

import base64
import select
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio

from waka.controller._drain_format import frames
from waka.controller._drain_policy import Outcome, status_outcome
from waka.controller._drain_url import DrainTarget
from waka.v1.common_pb2 import LogLine

CONNECT_TIMEOUT = 3.0  # Logplex: 3 s to connect
SEND_TIMEOUT = 5.0  # Logplex: 4 s per syslog send, 5 s per HTTP request
USER_AGENT = "waka-logplex/1"
CONTENT_TYPE = "application/logplex-1"


class DrainUnavailable(Exception):
    """The drain could not be reached, or the connection broke; the message says how."""


class CertificateInvalid(DrainUnavailable):
    """The drain's TLS certificate did not verify."""


@dataclass(frozen=True)
class Batch:
    """Lines sent together; the frame id stays the same when the batch is sent again, so the
    receiver can drop a repeat (Logplex-Frame-Id)."""

    lines: list[LogLine]
    frame_id: str


Connect = Callable[[DrainTarget], Awaitable[trio.abc.Stream]]


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifies servers against the system's CAs, and also `ca_file`'s (a private CA for a
    homelab's syslog server must not stop drains to public endpoints from verifying)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def connector(context: ssl.SSLContext, timeout: float = CONNECT_TIMEOUT) -> Connect:
    async def connect(target: DrainTarget) -> trio.abc.Stream:
        try:
            with trio.fail_after(timeout):
                tcp = await trio.open_tcp_stream(target.host, target.port)
                if not target.tls:
                    return tcp
                stream = trio.SSLStream(tcp, context, server_hostname=target.host)
                try:
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                return stream
        except trio.TooSlowError:
            raise DrainUnavailable(f"no connection within {timeout:g}s") from None
        except trio.BrokenResourceError as error:
            cause = error.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise CertificateInvalid(cause.verify_message or str(cause)) from None
            raise DrainUnavailable(f"TLS handshake failed: {cause or error}") from None
        except OSError as error:
            raise DrainUnavailable(describe_connect_error(error)) from None

    return connect


def describe_connect_error(error: OSError) -> str:
    """`connection refused` rather than trio's `all attempts to connect ... failed`: the reason
    is in the attempts, which trio gathers in the error's cause."""
    cause = error.__cause__
    attempts = cause.exceptions if isinstance(cause, BaseExceptionGroup) else (error,)
    reasons = {(a.strerror or str(a)).lower() for a in attempts if isinstance(a, OSError)} or {
        str(error)
    }
    return "cannot connect: " + ", ".join(sorted(reasons))


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def peer_has_closed(stream: trio.abc.Stream) -> bool:
    """True if a syslog receiver (which never sends) has readable data: that is its FIN, a
    reset or a TLS close_notify. Checked before each send, so a receiver that restarted does
    not swallow a batch into a dead connection."""
    sock = _socket_of(stream)
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP | select.POLLERR)
    return bool(poller.poll(0))


class SyslogSender:
    def __init__(
        self, target: DrainTarget, token: str, connect: Connect, timeout: float = SEND_TIMEOUT
    ) -> None:
        self._target = target
        self._token = token
        self._connect = connect
        self._timeout = timeout
        self._stream: trio.abc.Stream | None = None

    async def send(self, batch: Batch) -> Outcome:
        data = frames(batch.lines, self._token)
        if self._stream is not None and peer_has_closed(self._stream):
            await self.aclose()
        if self._stream is None:
            self._stream = await self._connect(self._target)
        try:
            with trio.fail_after(self._timeout):
                await self._stream.send_all(data)
        except trio.TooSlowError:
            await self.aclose()
            raise DrainUnavailable(f"the receiver took more than {self._timeout:g}s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            await self.aclose()
            raise DrainUnavailable(f"the connection broke: {error.__cause__ or error}") from None
        return Outcome.SENT

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


class HttpSender:
    def __init__(
        self, target: DrainTarget, token: str, connect: Connect, timeout: float = SEND_TIMEOUT
    ) -> None:
        self._target = target
        self._token = token
        self._connect = connect
        self._timeout = timeout
        self._stream: trio.abc.Stream | None = None
        self._conn: h11.Connection | None = None

    def request_headers(self, batch: Batch, length: int) -> list[tuple[str, str]]:
        headers = [
            ("Host", self._target.host_header),
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(length)),
            ("Logplex-Msg-Count", str(len(batch.lines))),
            ("Logplex-Frame-Id", batch.frame_id),
            ("Logplex-Drain-Token", self._token),
            ("User-Agent", USER_AGENT),
        ]
        if self._target.username is not None:
            pair = f"{self._target.username}:{self._target.password or ''}".encode()
            headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
        return headers

    async def send(self, batch: Batch) -> Outcome:
        body = frames(batch.lines, self._token)
        reused = self._stream is not None
        try:
            return await self._post(batch, body)
        except DrainUnavailable:
            if not reused:
                raise
        # A kept-alive connection the server had closed meanwhile: once more, on a new one.
        return await self._post(batch, body)

    async def _post(self, batch: Batch, body: bytes) -> Outcome:
        if self._stream is None or self._conn is None:
            self._stream = await self._connect(self._target)
            self._conn = h11.Connection(our_role=h11.CLIENT)
        stream, conn = self._stream, self._conn
        try:
            with trio.fail_after(self._timeout):
                request = h11.Request(
                    method="POST",
                    target=self._target.target,
                    headers=self.request_headers(batch, len(body)),
                )
                await stream.send_all(
                    conn.send(request)
                    + conn.send(h11.Data(data=body))
                    + conn.send(h11.EndOfMessage())
                )
                status = await self._read_response(stream, conn)
        except trio.TooSlowError:
            await self.aclose()
            raise DrainUnavailable(f"no response within {self._timeout:g}s") from None
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            h11.ProtocolError,
        ) as error:
            await self.aclose()
            raise DrainUnavailable(f"the connection broke: {error.__cause__ or error}") from None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.aclose()
        return status_outcome(status)

    async def _read_response(self, stream: trio.abc.Stream, conn: h11.Connection) -> int:
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the server closed the connection mid-response")

    async def aclose(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            await trio.aclose_forcefully(stream)
