"""The small HTTP/1.1 server: real sockets on 127.0.0.1, a raw h11 client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import h11
import pytest
import trio

from waka.controller._http import Request, ResponseWriter, send_text, serve_http

DEADLINE = 10.0


def run_server(
    handler: Callable[[Request, ResponseWriter], Awaitable[None]],
    scenario: Callable[[int], Awaitable[None]],
    *,
    idle_timeout: float = 30.0,
) -> None:
    """Runs `scenario(port)` against a server with `handler`, then stops the server."""

    async def main() -> None:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                port = listeners[0].socket.getsockname()[1]
                await nursery.start(
                    partial(serve_http, handler, listeners, idle_timeout=idle_timeout)
                )
                await scenario(port)
                nursery.cancel_scope.cancel()

    trio.run(main)


class Client:
    """One HTTP/1.1 connection driven event by event."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *events: h11.Event) -> None:
        for event in events:
            await self.stream.send_all(self.h11.send(event) or b"")

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        await self.send(
            h11.Request(method=method, target=target, headers=[("Host", "test"), *(headers or [])])
        )

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
                continue
            assert isinstance(event, h11.Event)
            return event

    async def response(self) -> h11.Response:
        event = await self.next_event()
        assert isinstance(event, h11.Response), event
        return event

    async def body(self) -> bytes:
        parts = []
        while isinstance(event := await self.next_event(), h11.Data):
            parts.append(bytes(event.data))
        assert isinstance(event, h11.EndOfMessage), event
        return b"".join(parts)

    async def get(self, target: str) -> tuple[h11.Response, bytes]:
        await self.request("GET", target)
        await self.send(h11.EndOfMessage())
        response = await self.response()
        return response, await self.body()


async def echo_handler(request: Request, response: ResponseWriter) -> None:
    body = b""
    while chunk := await request.body.receive_some():
        body += chunk
    await send_text(response, 200, f"{request.method} {request.target} {body.decode()}")


def test_response_body_reaches_client_before_the_handler_finishes() -> None:
    client_saw_first_part = trio.Event()

    async def handler(request: Request, response: ResponseWriter) -> None:
        await response.start(200, [("Content-Type", "text/plain")])
        await response.write(b"first\n")
        await client_saw_first_part.wait()  # hangs (and the deadline fails) if the write is held
        await response.write(b"second\n")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("GET", "/")
        await client.send(h11.EndOfMessage())
        response = await client.response()
        assert response.status_code == 200
        assert dict(response.headers)[b"transfer-encoding"] == b"chunked"
        first = await client.next_event()
        assert isinstance(first, h11.Data) and bytes(first.data) == b"first\n"
        client_saw_first_part.set()
        assert await client.body() == b"second\n"

    run_server(handler, scenario)


def test_request_body_reaches_handler_while_the_client_is_still_sending() -> None:
    handler_saw_first_part = trio.Event()

    async def handler(request: Request, response: ResponseWriter) -> None:
        first = await request.body.receive_some()
        handler_saw_first_part.set()
        rest = b""
        while chunk := await request.body.receive_some():
            rest += chunk
        await send_text(response, 200, f"{first.decode()}|{rest.decode()}")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("POST", "/", [("Transfer-Encoding", "chunked")])
        await client.send(h11.Data(data=b"part one"))
        await handler_saw_first_part.wait()
        await client.send(h11.Data(data=b"part two"), h11.EndOfMessage())
        assert (await client.response()).status_code == 200
        assert await client.body() == b"part one|part two"

    run_server(handler, scenario)


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        for index in range(3):
            response, body = await client.get(f"/request/{index}")
            assert response.status_code == 200
            assert body == f"GET /request/{index} ".encode()
            client.h11.start_next_cycle()

    run_server(echo_handler, scenario)


def test_request_exposes_headers_case_insensitively_and_the_client_address() -> None:
    seen: list[tuple[str | None, str | None, str]] = []

    async def handler(request: Request, response: ResponseWriter) -> None:
        seen.append(
            (request.header("x-token-name"), request.header("Missing"), request.client_address)
        )
        await send_text(response, 200, "")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("GET", "/", [("X-Token-Name", "Value")])
        await client.send(h11.EndOfMessage())
        assert (await client.response()).status_code == 200

    run_server(handler, scenario)
    assert seen == [("Value", None, "127.0.0.1")]


def test_handler_failure_before_responding_is_a_500_and_the_connection_lives_on() -> None:
    async def handler(request: Request, response: ResponseWriter) -> None:
        if request.target == "/fail":
            raise RuntimeError("boom")
        await send_text(response, 200, "fine")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        response, body = await client.get("/fail")
        assert response.status_code == 500
        assert b"boom" not in body  # internals stay in the log
        client.h11.start_next_cycle()
        response, body = await client.get("/ok")
        assert (response.status_code, body) == (200, b"fine")

    run_server(handler, scenario)


def test_handler_failure_mid_response_ends_the_connection_without_a_final_chunk() -> None:
    async def handler(request: Request, response: ResponseWriter) -> None:
        await response.start(200, [])
        await response.write(b"partial")
        raise RuntimeError("boom")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("GET", "/")
        await client.send(h11.EndOfMessage())
        assert (await client.response()).status_code == 200
        with pytest.raises(h11.RemoteProtocolError):  # the body ends before its last chunk
            await client.body()

    run_server(handler, scenario)


def test_handler_without_a_response_is_a_500() -> None:
    async def handler(request: Request, response: ResponseWriter) -> None:
        return None

    async def scenario(port: int) -> None:
        response, _ = await (await Client.connect(port)).get("/")
        assert response.status_code == 500

    run_server(handler, scenario)


def test_malformed_request_gets_a_400_and_a_closed_connection() -> None:
    async def scenario(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 400 ")

    run_server(echo_handler, scenario)


def test_expect_100_continue_is_answered_when_the_handler_reads_the_body() -> None:
    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("POST", "/", [("Expect", "100-continue"), ("Content-Length", "5")])
        informational = await client.next_event()
        assert isinstance(informational, h11.InformationalResponse)
        assert informational.status_code == 100
        await client.send(h11.Data(data=b"hello"), h11.EndOfMessage())
        assert (await client.response()).status_code == 200
        assert await client.body() == b"POST / hello"

    run_server(echo_handler, scenario)


def test_unread_request_body_is_drained_so_the_connection_is_reused() -> None:
    async def handler(request: Request, response: ResponseWriter) -> None:
        await send_text(response, 401, "no")  # answers without reading the body

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("POST", "/", [("Content-Length", "100000")])
        await client.send(h11.Data(data=b"x" * 100000), h11.EndOfMessage())
        assert (await client.response()).status_code == 401
        assert await client.body() == b"no"
        client.h11.start_next_cycle()
        response, _ = await client.get("/again")
        assert response.status_code == 401

    run_server(handler, scenario)


def test_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def scenario(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(5):
            assert await stream.receive_some(1) == b""  # the server hung up

    run_server(echo_handler, scenario, idle_timeout=0.2)


def test_client_that_disconnects_mid_response_does_not_disturb_other_clients() -> None:
    handler_failed_to_write = trio.Event()

    async def handler(request: Request, response: ResponseWriter) -> None:
        if request.target != "/stream":
            await send_text(response, 200, "other")
            return
        await response.start(200, [])
        try:
            while True:
                await response.write(b"x" * 65536)
        finally:
            handler_failed_to_write.set()

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("GET", "/stream")
        await client.send(h11.EndOfMessage())
        await client.response()
        await client.stream.aclose()
        await handler_failed_to_write.wait()
        response, body = await (await Client.connect(port)).get("/")
        assert (response.status_code, body) == (200, b"other")

    run_server(handler, scenario)


def test_handler_breaking_the_protocol_only_loses_its_own_connection() -> None:
    async def handler(request: Request, response: ResponseWriter) -> None:
        if request.target == "/short":
            await response.start(200, [("Content-Length", "10")])
            await response.write(b"abc")  # 7 bytes short of what it promised
            return
        await send_text(response, 200, "fine")

    async def scenario(port: int) -> None:
        client = await Client.connect(port)
        await client.request("GET", "/short")
        await client.send(h11.EndOfMessage())
        assert (await client.response()).status_code == 200
        with pytest.raises(h11.RemoteProtocolError):
            await client.body()
        response, body = await (await Client.connect(port)).get("/")
        assert (response.status_code, body) == (200, b"fine")

    run_server(handler, scenario)
