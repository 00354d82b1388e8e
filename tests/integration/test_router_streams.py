"""Bodies and upgrades through the router: streamed both ways, never held whole; WebSockets."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

import h11
import psutil
import trio
from test_router_support import Env, read_until_closed, run_router

from waka.controller._http import Request, ResponseWriter, send_text

MB = 1024 * 1024
BIG = 100 * MB
CHUNK = 64 * 1024
# The router, the test's client and its backend share this process; none may hold a body.
RSS_GROWTH_LIMIT = 40 * MB


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def test_100_mb_download_streams_through_without_being_held() -> None:
    client_has_first_mb = trio.Event()
    piece = os.urandom(CHUNK)

    async def download(request: Request, response: ResponseWriter) -> None:
        await response.start(200, [("Content-Type", "application/octet-stream")])  # chunked
        for i in range(BIG // CHUNK):
            if i == 2 * MB // CHUNK:
                # The rest of the body does not exist until the client has the first part.
                with trio.fail_after(10):
                    await client_has_first_mb.wait()
            await response.write(piece)

    async def scenario(env: Env) -> None:
        env.route("files", await env.backend(download))
        client = await env.client()
        await client.send(
            h11.Request(method="GET", target="/big", headers=[("Host", "files.localhost")]),
            h11.EndOfMessage(),
        )
        response = await client.head()
        assert response.status_code == 200
        start_rss = rss()
        received = 0
        peak = start_rss
        while isinstance(event := await client.next_event(), h11.Data):
            received += len(event.data)
            if received >= MB:
                client_has_first_mb.set()
            if received % (10 * MB) < len(event.data):
                peak = max(peak, rss())
        assert isinstance(event, h11.EndOfMessage)
        assert received == BIG
        assert peak - start_rss < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - start_rss) // MB} MB"
        await client.aclose()
        assert "bytes=" in await env.wait_for_line("files", "status=200")

    run_router(scenario)


def test_100_mb_upload_streams_through_without_being_held() -> None:
    app_has_first_mb = trio.Event()

    async def upload(request: Request, response: ResponseWriter) -> None:
        total = 0
        while chunk := await request.body.receive_some():
            total += len(chunk)
            if total >= MB:
                app_has_first_mb.set()
        await send_text(response, 200, str(total))

    async def scenario(env: Env) -> None:
        env.route("files", await env.backend(upload))
        client = await env.client()
        await client.send(
            h11.Request(
                method="POST",
                target="/up",
                headers=[("Host", "files.localhost"), ("Content-Length", str(BIG))],
            )
        )
        piece = os.urandom(CHUNK)
        start_rss = rss()
        peak = start_rss
        for i in range(BIG // CHUNK):
            if i == 2 * MB // CHUNK:
                # The app must be reading before the client has sent most of the body.
                with trio.fail_after(10):
                    await app_has_first_mb.wait()
            await client.send(h11.Data(data=piece))
            if i % 160 == 0:
                peak = max(peak, rss())
        await client.send(h11.EndOfMessage())
        response = await client.head()
        assert response.status_code == 200
        assert await client.body() == str(BIG).encode()
        assert peak - start_rss < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - start_rss) // MB} MB"
        await client.aclose()

    run_router(scenario)


def test_chunked_request_body_and_chunked_response_pass_through() -> None:
    async def echo(request: Request, response: ResponseWriter) -> None:
        await response.start(200, [("Content-Type", "text/plain")])  # no length: chunked
        while chunk := await request.body.receive_some():
            await response.write(chunk.upper())

    async def scenario(env: Env) -> None:
        env.route("echo", await env.backend(echo))
        client = await env.client()
        await client.send(
            h11.Request(
                method="POST",
                target="/",
                headers=[("Host", "echo.localhost"), ("Transfer-Encoding", "chunked")],
            )
        )
        for part in (b"hello ", b"chunked ", b"world"):
            await client.send(h11.Data(data=part))
        await client.send(h11.EndOfMessage())
        response = await client.head()
        assert response.status_code == 200
        assert (b"transfer-encoding", b"chunked") in response.headers
        assert await client.body() == b"HELLO CHUNKED WORLD"

    run_router(scenario)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def echo(request: Request, response: ResponseWriter) -> None:
        body = b""
        while chunk := await request.body.receive_some():
            body += chunk
        await send_text(response, 200, body.decode())

    async def scenario(env: Env) -> None:
        env.route("echo", await env.backend(echo))
        client = await env.client()
        await client.send(
            h11.Request(
                method="PUT",
                target="/",
                headers=[
                    ("Host", "echo.localhost"),
                    ("Content-Length", "5"),
                    ("Expect", "100-continue"),
                ],
            )
        )
        interim = await client.next_event()
        assert isinstance(interim, h11.InformationalResponse)
        assert interim.status_code == 100
        await client.send(h11.Data(data=b"12345"), h11.EndOfMessage())
        assert (await client.head()).status_code == 200
        assert await client.body() == b"12345"

    run_router(scenario)


def test_http_1_0_client_gets_a_complete_response_then_a_close() -> None:
    async def stream(request: Request, response: ResponseWriter) -> None:
        await response.start(200, [("Content-Type", "text/plain")])  # chunked to the router
        await response.write(b"one ")
        await response.write(b"two")

    async def scenario(env: Env) -> None:
        env.route("old", await env.backend(stream))
        sock = await trio.open_tcp_stream("127.0.0.1", env.port)
        await sock.send_all(b"GET / HTTP/1.0\r\nHost: old.localhost\r\n\r\n")
        with trio.fail_after(5):
            raw = await read_until_closed(sock)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"chunked" not in head.lower()
        assert body == b"one two"

    run_router(scenario)


def websocket_accept(key: bytes) -> bytes:
    magic = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + magic).digest())


def text_frame(payload: bytes, mask: bytes | None) -> bytes:
    """One final text frame (payloads under 126 bytes), masked when sent by a client."""
    if mask is None:
        return bytes([0x81, len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def read_exactly(stream: trio.SocketStream, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        chunk = await stream.receive_some(4096)
        assert chunk, "closed early"
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


async def websocket_echo_app(stream: trio.SocketStream) -> None:
    """A minimal WebSocket server: the handshake, then echo one text frame and close."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive_some(4096)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer = bytearray(rest)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + websocket_accept(key) + b"\r\n\r\n"
    )
    first, second = struct.unpack("BB", await read_exactly(stream, buffer, 2))
    assert first == 0x81 and second & 0x80
    mask = await read_exactly(stream, buffer, 4)
    payload = await read_exactly(stream, buffer, second & 0x7F)
    text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await stream.send_all(text_frame(b"echo: " + text, None))
    await stream.aclose()


def test_websocket_upgrade_is_spliced_both_ways_until_a_side_closes() -> None:
    async def scenario(env: Env) -> None:
        env.route("chat", await env.raw_backend(websocket_echo_app))
        sock = await trio.open_tcp_stream("127.0.0.1", env.port)
        key = base64.b64encode(os.urandom(16))
        await sock.send_all(
            b"GET /ws HTTP/1.1\r\nHost: chat.localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        buffer = bytearray()
        with trio.fail_after(5):
            while b"\r\n\r\n" not in buffer:
                buffer += await sock.receive_some(4096)
            head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert b"Sec-WebSocket-Accept: " + websocket_accept(key) in head
            assert b"Upgrade: websocket" in head
            await sock.send_all(text_frame(b"hi there", os.urandom(4)))
            buffer = bytearray(rest)
            frame = await read_exactly(sock, buffer, 2 + len(b"echo: hi there"))
            assert frame == text_frame(b"echo: hi there", None)
            # The app closed: the router closes the client side too.
            assert await read_until_closed(sock) == b""
        line = await env.wait_for_line("chat", "status=101")
        assert line.startswith('at=info method=GET path="/ws"')

    run_router(scenario)
