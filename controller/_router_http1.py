"""HTTP/1.1 on the wire for the router: message heads, framing, chunked coding, a buffered socket.

Why not h11 here (the git endpoint uses it): one request/response cycle through h11 costs about
125 µs of CPU on these machines, and a proxy pays it twice (client side and dyno side), which caps
the router near 4k requests/s on one core before any routing work. A head is parsed here in a few
µs. The parser is strict where a proxy must be (RFC 9112): a request with both Transfer-Encoding
and Content-Length, conflicting Content-Lengths, a transfer coding other than `chunked`, obsolete
line folding, whitespace before a colon, or control characters in a value is refused, so the router
and the dyno can never disagree on where a request ends (request smuggling).

Bodies are never held whole: they move in chunks of at most RECEIVE_SIZE.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import trio

RECEIVE_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 64 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII (and obs-text) only: no spaces or control characters in a request target.
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
# Field values may hold HTAB, SP, visible ASCII and obs-text; CR, LF, NUL and other CTLs never.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])"
)
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Every header line of a head at once: a token, a colon, a value without control characters.
_FIELD_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")

Headers = list[tuple[bytes, bytes, bytes]]  # (lowercased name, name as sent, value)

NO_BODY = -1  # framing: no body at all
CHUNKED = -2  # framing: chunked transfer coding
UNTIL_CLOSE = -3  # framing: the body ends when the sender closes (responses only)


class ProtocolError(Exception):
    """A peer broke HTTP/1.1; `status` is what a server answers it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PeerClosed(Exception):
    """The peer closed (or reset) the connection before a message was complete."""


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes  # b"1.1" or b"1.0"
    headers: Headers
    framing: int  # a length >= 0, NO_BODY or CHUNKED
    connection: set[bytes]  # the Connection header's tokens, lowercased (found while parsing)

    def get(self, name: bytes) -> bytes | None:
        for lower, _, value in self.headers:
            if lower == name:
                return value
        return None


@dataclass(slots=True)
class ResponseHead:
    version: bytes
    status: int
    reason: bytes
    headers: Headers
    connection: set[bytes]  # the Connection header's tokens, lowercased

    def get(self, name: bytes) -> bytes | None:
        for lower, _, value in self.headers:
            if lower == name:
                return value
        return None


def _parse_fields(lines: list[bytes]) -> Headers:
    headers: Headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        # A name with surrounding whitespace (obs-fold lines start with one) is refused outright.
        if not sep or not _TOKEN.fullmatch(name):
            raise ProtocolError(f"malformed header line {line[:60]!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise ProtocolError(f"control character in header {name.decode('latin-1')!r}")
        headers.append((name.lower(), name, value))
    return headers


def _parse_block(block: bytes) -> Headers:
    """Header lines, each ending in CRLF: one regex pass checks them all (the common case)."""
    if not _FIELD_BLOCK.fullmatch(block):
        return _parse_fields(block.split(b"\r\n")[:-1])  # finds the culprit for the message
    headers: Headers = []
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        headers.append((name.lower(), name, value.strip(b" \t")))
    return headers


def parse_request_head(head: bytes) -> RequestHead:
    """Parses a request head (everything up to and including the blank line)."""
    line_end = head.find(b"\r\n")
    match = _REQUEST_LINE.fullmatch(head, 0, line_end)
    if match is not None:  # the common case, checked in one pass
        method, target, minor = match.groups()
        version = b"1.1" if minor == b"1" else b"1.0"
    else:
        _request_line_error(head[:line_end])
    headers = _parse_block(head[line_end + 2 : -2])
    connection: set[bytes] = set()
    framing = _request_framing(version, headers, connection)
    return RequestHead(method, target, version, headers, framing, connection)


def _request_line_error(request_line: bytes) -> NoReturn:
    """Says what is wrong with a request line `_REQUEST_LINE` refused."""
    parts = request_line.split(b" ")
    if len(parts) == 3:
        method, target, version = parts
        if not _TOKEN.fullmatch(method):
            raise ProtocolError(f"malformed method {method[:20]!r}")
        if not _TARGET.fullmatch(target):
            raise ProtocolError("malformed request target")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise ProtocolError(f"unsupported HTTP version {version[:20]!r}", 505)
    raise ProtocolError(f"malformed request line {request_line[:80]!r}")


def _request_framing(version: bytes, headers: Headers, connection: set[bytes]) -> int:
    """The request's body framing; fills `connection` with the Connection tokens on the way."""
    codings: list[bytes] = []
    lengths: list[bytes] = []
    for lower, _, value in headers:
        if lower == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
        elif lower == b"content-length":
            lengths.extend(v.strip() for v in value.split(b","))
        elif lower == b"connection":
            connection.update(t.strip().lower() for t in value.split(b","))
    if codings:
        if lengths:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        if version == b"1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        if codings != [b"chunked"]:
            raise ProtocolError("only the chunked transfer coding is supported", 501)
        return CHUNKED
    if lengths:
        length = _content_length(lengths)
        return length if length > 0 else NO_BODY
    return NO_BODY


def _content_length(values: list[bytes]) -> int:
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= 18:  # the usual case
        return int(values[0])
    if len(set(values)) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise ProtocolError("invalid Content-Length")
    return int(values[0])


def parse_response_head(head: bytes) -> ResponseHead:
    line_end = head.find(b"\r\n")
    match = _STATUS_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise ProtocolError(f"malformed status line {head[:line_end][:80]!r}", 502)
    try:
        headers = _parse_block(head[line_end + 2 : -2])
    except ProtocolError as error:
        raise ProtocolError(str(error), 502) from error
    return ResponseHead(
        b"1." + match.group(1),
        int(match.group(2)),
        match.group(3) or b"",
        headers,
        connection_tokens(headers),
    )


def response_framing(request_method: bytes, head: ResponseHead) -> int:
    """How the response body is delimited (RFC 9112 section 6.3)."""
    status = head.status
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        return NO_BODY
    codings: list[bytes] = []
    lengths: list[bytes] = []
    for lower, _, value in head.headers:
        if lower == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
        elif lower == b"content-length":
            lengths.extend(v.strip() for v in value.split(b","))
    if codings:
        # Transfer-Encoding wins over Content-Length; a final coding other than chunked means
        # the body runs until the connection closes.
        return CHUNKED if codings[-1] == b"chunked" else UNTIL_CLOSE
    if lengths:
        try:
            return _content_length(lengths)
        except ProtocolError as error:
            raise ProtocolError(str(error), 502) from error
    return UNTIL_CLOSE


def connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for lower, _, value in headers:
        if lower == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


class Conn:
    """A non-blocking socket with a read buffer, so a message boundary can fall anywhere in a read.

    Operations try the system call first and wait (`trio.lowlevel.wait_readable`/`_writable`)
    only when it would block: a request through the router then costs two trips through trio's
    scheduler instead of six or more with `trio.SocketStream`, whose per-call layers were most of
    the router's CPU time. An operation that did not wait is not a checkpoint, so every
    FAIRNESS_OPS operations that did not wait, one yields anyway: a fast peer streaming a large
    body cannot starve other connections, and cancellation (timeouts) is still noticed.
    """

    __slots__ = ("_unyielded", "buffer", "closed", "received", "sent", "sock")

    FAIRNESS_OPS = 16

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Heads and bodies go out as soon as they are ready; Nagle's algorithm would hold a
            # small write back until the previous one is acknowledged (up to 40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buffer = bytearray()
        self.received = 0
        self.sent = 0
        self.closed = False
        self._unyielded = 0

    async def _yield(self) -> None:
        # Called when `_unyielded` reaches FAIRNESS_OPS; the counting is inlined at each call
        # site because creating a coroutine for every operation costs more than the check.
        self._unyielded = 0
        await trio.lowlevel.checkpoint()

    async def _receive(self) -> bytes:
        """What one read returns (waiting for it if need be); b"" once the peer has closed."""
        sock = self.sock
        while True:
            try:
                data = sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    return b""
                self._unyielded = 0
                continue
            except OSError:
                return b""  # a reset reads like a close; the caller decides if it was early
            self.received += len(data)
            return data

    async def _fill(self) -> bool:
        data = await self._receive()
        if not data:
            return False
        self.buffer += data
        return True

    async def read_head(self) -> bytes | None:
        """The next message head; None if the peer closed cleanly before sending any of it."""
        buffer = self.buffer
        if not buffer:
            # The common case: one read holds a whole head (a bodiless request, a small response
            # with its body). The head is cut from the received bytes; only what follows it is
            # buffered.
            data = await self._receive()
            if not data:
                return None
            end = data.find(b"\r\n\r\n") + 4
            if end >= 4 and not data.startswith(b"\r\n"):
                if end == len(data):
                    head = data
                else:
                    head = data[:end]
                    buffer += memoryview(data)[end:]
                self._unyielded += 1
                if self._unyielded >= self.FAIRNESS_OPS:
                    await self._yield()
                return head
            buffer += data
        while True:
            # RFC 9112 2.2: ignore empty lines before a request line.
            while buffer[:2] == b"\r\n":
                del buffer[:2]
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buffer[: end + 4])
                del buffer[: end + 4]
                self._unyielded += 1
                if self._unyielded >= self.FAIRNESS_OPS:
                    await self._yield()
                return head
            if len(buffer) > MAX_HEAD:
                raise ProtocolError("message head too large", 431)
            if not await self._fill():
                if buffer:
                    raise PeerClosed("closed in the middle of a message head")
                return None

    async def read_some(self, limit: int = RECEIVE_SIZE) -> bytes:
        """Up to `limit` bytes (buffered ones first); b"" once the peer has closed."""
        buffer = self.buffer
        if not buffer and not await self._fill():
            return b""
        if len(buffer) <= limit:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:limit])
            del buffer[:limit]
        self._unyielded += 1
        if self._unyielded >= self.FAIRNESS_OPS:
            await self._yield()
        return data

    async def read_line(self, limit: int) -> bytes:
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                return line
            if len(buffer) > limit:
                raise ProtocolError("line too long in a chunked body")
            if not await self._fill():
                raise PeerClosed("closed in the middle of a chunked body")

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Sends all of `data`; PeerClosed if the peer is gone."""
        sock = self.sock
        total = len(data)
        view: memoryview | None = None
        done = 0
        while done < total:
            try:
                done += sock.send(data if view is None else view[done:])
            except BlockingIOError:
                if view is None:
                    view = memoryview(data)
                try:
                    await trio.lowlevel.wait_writable(sock)
                except trio.ClosedResourceError as error:
                    raise PeerClosed("the connection was closed") from error
                self._unyielded = 0
                continue
            except OSError as error:
                raise PeerClosed(f"sending failed: {error}") from error
            if view is None and done < total:
                view = memoryview(data)
        self.sent += total
        self._unyielded += 1
        if self._unyielded >= self.FAIRNESS_OPS:
            await self._yield()

    def close(self) -> None:
        """Closes the socket; a task waiting on it gets PeerClosed or end of stream."""
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


Sink = Callable[[bytes], Awaitable[None]]


async def copy_length(source: Conn, sink: Sink, length: int, progress: Callable[[], None]) -> None:
    """Moves exactly `length` body bytes from `source` to `sink`."""
    remaining = length
    while remaining:
        data = await source.read_some(min(remaining, RECEIVE_SIZE))
        if not data:
            raise PeerClosed(f"closed with {remaining} bytes of the body still to come")
        remaining -= len(data)
        progress()
        await sink(data)


async def copy_until_close(source: Conn, sink: Sink, progress: Callable[[], None]) -> None:
    while data := await source.read_some():
        progress()
        await sink(data)


async def copy_chunked(source: Conn, sink: Sink, progress: Callable[[], None]) -> None:
    """Decodes a chunked body from `source`, giving `sink` the data; trailers are dropped."""
    while True:
        line = await source.read_line(MAX_CHUNK_LINE)
        size_text = line.partition(b";")[0].strip(b" \t")
        if not _HEX.fullmatch(size_text):
            raise ProtocolError(f"malformed chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            trailer_bytes = 0
            while trailer := await source.read_line(MAX_CHUNK_LINE):
                trailer_bytes += len(trailer)
                if trailer_bytes > MAX_TRAILERS:
                    raise ProtocolError("trailer section too large")
            progress()
            return
        await copy_length(source, sink, size, progress)
        if await source.read_line(2) != b"":
            raise ProtocolError("chunk data longer than its declared size")


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
