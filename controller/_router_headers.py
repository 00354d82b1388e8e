"""The headers the router adds, keeps and drops, on the way to the dyno and back (as Heroku does).

To the dyno:
- `X-Forwarded-For`: the client's address, appended to any value the client sent.
- `X-Forwarded-Proto`, `X-Forwarded-Port`: the scheme and port the client used (replaced,
  except from a trusted proxy, such as a TLS terminator in front: see `forwarded_scheme`).
- `X-Request-Start`: when the router received the request, integer milliseconds since the epoch
  (Heroku's form; nginx's `t=` prefix is not used).
- `X-Request-Id`: the client's value when it is 20 to 200 characters of `[A-Za-z0-9+/=-]`,
  otherwise a new UUID; the same id is logged as `request_id`.
- `Via`: `1.1 waka` appended (also on the response).

Hop-by-hop headers (`Connection` and what it names, `Keep-Alive`, `Transfer-Encoding`, `TE`,
`Trailer`, `Upgrade`, `Proxy-Connection`) belong to one connection and never cross the router,
except `Upgrade` on a WebSocket handshake. `Expect: 100-continue` is answered by the router itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from waka.controller._router_http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    RequestHead,
    ResponseHead,
)

VIA = b"1.1 waka"
REQUEST_ID = re.compile(rb"[A-Za-z0-9+/=\-]{20,200}")
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
# Replaced by the router's own values on the way in.
_REPLACED = frozenset(
    {
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-request-start",
        b"x-request-id",
        b"expect",
    }
)
# Everything `upstream_request` leaves out of the client's headers (X-Forwarded-For is rebuilt).
_NOT_FORWARDED = _HOP_BY_HOP | _REPLACED | {b"x-forwarded-for"}
# Connection tokens that name no header to drop (or one the router must keep).
_NOT_DROPPED = frozenset({b"close", b"keep-alive", b"upgrade", b"host"})
_REASONS = {
    101: b"Switching Protocols",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


def _random_blocks() -> Iterator[bytes]:
    """16 random bytes at a time, read from the OS 256 blocks at once."""
    while True:
        data = os.urandom(16 * 256)
        for start in range(0, len(data), 16):
            yield data[start : start + 16]


_RANDOM_16 = _random_blocks()


def request_id(client_value: bytes | None) -> bytes:
    if client_value is not None and REQUEST_ID.fullmatch(client_value):
        return client_value
    return new_uuid4()


def new_uuid4() -> bytes:
    """A random (version 4) UUID; a third of the cost of `str(uuid.uuid4())`.

    The random bytes come from the OS a few hundred ids at a time, not one system call per id.
    """
    h = next(_RANDOM_16).hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}".encode()


def is_upgrade(head: RequestHead) -> bool:
    """A protocol upgrade (WebSocket) the router will splice if the dyno accepts it."""
    return (
        head.version == b"1.1"
        and head.get(b"upgrade") is not None
        and b"upgrade" in head.connection
    )


def expects_continue(head: RequestHead) -> bool:
    expect = head.get(b"expect")
    return expect is not None and expect.lower() == b"100-continue" and head.version == b"1.1"


def upstream_request(
    head: RequestHead,
    *,
    target: bytes,
    forwarded_for: bytes,
    proto: bytes,
    port: bytes,
    start_ms: int,
    request_id: bytes,
    upgrade: bool,
) -> bytes:
    """The request head for the dyno. `forwarded_for` comes from `forwarded_for()`."""
    dropped = head.connection - _NOT_DROPPED
    via: bytes | None = None
    lines = [b"%b %b HTTP/1.1" % (head.method, target)]
    append = lines.append
    for lower, name, value in head.headers:
        if lower in _NOT_FORWARDED or lower in dropped:
            continue
        if lower == b"via":
            via = value if via is None else via + b", " + value
            continue
        append(name + b": " + value)
    append(
        b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: %b\r\nX-Forwarded-Port: %b\r\n"
        b"X-Request-Start: %d\r\nX-Request-Id: %b\r\nVia: %b"
        % (
            forwarded_for,
            proto,
            port,
            start_ms,
            request_id,
            VIA if via is None else via + b", " + VIA,
        )
    )
    if upgrade:
        append(b"Connection: Upgrade")
        append(b"Upgrade: " + (head.get(b"upgrade") or b""))
    if head.framing == CHUNKED:
        append(b"Transfer-Encoding: chunked")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def forwarded_scheme(head: RequestHead, proto: str, port: int) -> tuple[str, int]:
    """The scheme and port the client used, as a trusted proxy in front says (its
    X-Forwarded-Proto and X-Forwarded-Port); `proto` and `port` where it says nothing usable.
    A proxy that says https and no port was reached on 443 (80 for http)."""
    said = (head.get(b"x-forwarded-proto") or b"").partition(b",")[0].strip().lower()
    if said not in (b"http", b"https"):
        return proto, port
    scheme = said.decode()
    sent_port = (head.get(b"x-forwarded-port") or b"").partition(b",")[0].strip()
    if sent_port.isdigit() and 0 < int(sent_port) < 65536:
        return scheme, int(sent_port)
    return scheme, 443 if scheme == "https" else 80


def forwarded_for(head: RequestHead, client_ip: bytes) -> bytes:
    """X-Forwarded-For for the dyno: what the client sent, then the client's own address."""
    sent = [value for lower, _, value in head.headers if lower == b"x-forwarded-for" and value]
    return b", ".join([*sent, client_ip])


def client_response(
    head: ResponseHead, *, framing: int, chunk_it: bool, close: bool, upgrade: bool
) -> bytes:
    """The response head for the client. `chunk_it`: the router sends the body chunked."""
    dropped = head.connection
    via: bytes | None = None
    lines = [b"HTTP/1.1 %d %b" % (head.status, head.reason)]
    append = lines.append
    for lower, name, value in head.headers:
        if lower in _HOP_BY_HOP or lower in dropped:
            continue
        if lower == b"content-length" and framing in (CHUNKED, UNTIL_CLOSE):
            continue  # the body is re-framed; a stale length would corrupt it
        if lower == b"via":
            via = value if via is None else via + b", " + value
            continue
        append(name + b": " + value)
    append(b"Via: " + (VIA if via is None else via + b", " + VIA))
    if upgrade:
        append(b"Connection: Upgrade")
        append(b"Upgrade: " + (head.get(b"upgrade") or b""))
    elif close:
        append(b"Connection: close")
    if chunk_it:
        append(b"Transfer-Encoding: chunked")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/html; charset=utf-8",
    close: bool = False,
    head_only: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A complete response made by the router itself (error pages, metrics)."""
    lines = [
        b"HTTP/1.1 %d %b" % (status, _REASONS.get(status, b"")),
        b"Content-Type: " + content_type,
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-cache, no-store",
        b"Via: " + VIA,
    ]
    lines.extend(name + b": " + value for name, value in extra)
    if close:
        lines.append(b"Connection: close")
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    return head if head_only else head + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
