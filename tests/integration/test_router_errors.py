"""Router failures produced for real: H codes, their pages and log lines; retries and replays."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import trio
import trio.testing
from test_router_support import FAST, Env, read_until_closed, run_router

from waka.controller._http import Request, ResponseWriter, send_text
from waka.controller._router_table import AppRoute, RoutingTable, WebDyno


async def request_heads(stream: trio.SocketStream) -> AsyncIterator[bytes]:
    """The head of each request a raw backend's connection receives, until the peer closes."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        yield head


def closed_port_address() -> str:
    """An address where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def ok(request: Request, response: ResponseWriter) -> None:
    while await request.body.receive_some():
        pass
    await send_text(response, 200, "ok")


def assert_error(reply_status: int, line: str, code: str, desc: str, at: str = "error") -> None:
    assert reply_status == 503
    assert line.startswith(f'at={at} code={code} desc="{desc}" method='), line


def test_h14_when_the_app_has_no_web_dynos() -> None:
    async def scenario(env: Env) -> None:
        env.table.update_app(AppRoute.build("idle", []))
        reply = await env.get("idle.localhost")
        assert "Application error" in reply.text
        line = await env.wait_for_line("idle", "code=H14")
        assert_error(reply.status, line, "H14", "No web processes running")
        assert "dyno= connect= service= status=503 bytes= protocol=http" in line

    run_router(scenario)


def test_h10_when_web_dynos_crashed_and_none_is_up() -> None:
    async def scenario(env: Env) -> None:
        env.table.update_app(
            AppRoute.build("boom", [WebDyno("web.1", "crashed"), WebDyno("web.2", "starting")])
        )
        reply = await env.get("boom.localhost")
        assert_error(reply.status, await env.wait_for_line("boom", "code="), "H10", "App crashed")

    run_router(scenario)


def test_h10_when_no_listed_dyno_accepts_connections() -> None:
    async def scenario(env: Env) -> None:
        env.route("gone", closed_port_address(), closed_port_address())
        reply = await env.get("gone.localhost")
        assert_error(reply.status, await env.wait_for_line("gone", "code="), "H10", "App crashed")

    run_router(scenario)


def test_refused_connection_is_retried_on_another_dyno() -> None:
    async def scenario(env: Env) -> None:
        env.route("flaky", closed_port_address(), await env.backend(ok))
        for _ in range(4):
            assert (await env.get("flaky.localhost")).text == "ok"
        assert all("dyno=web.2" in line for line in env.app_lines("flaky"))

    run_router(scenario)


def test_h12_when_the_app_sends_nothing_within_the_first_byte_timeout() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await read_until_closed(stream)  # reads the request, never answers

    async def scenario(env: Env) -> None:
        env.route("slow", await env.raw_backend(silent))
        started = trio.current_time()
        reply = await env.get("slow.localhost")
        elapsed = trio.current_time() - started
        assert 0.3 <= elapsed < 2.0, elapsed
        line = await env.wait_for_line("slow", "code=")
        assert_error(reply.status, line, "H12", "Request timeout")
        service = int(re.search(r"service=(\d+)ms", line).group(1))  # type: ignore[union-attr]
        assert service >= 300

    run_router(scenario, timeouts=replace(FAST, first_byte=0.3))


def test_after_an_h12_the_kept_alive_client_connection_carries_the_next_request() -> None:
    connections: list[int] = []

    async def silent_once(stream: trio.SocketStream) -> None:
        """Never answers on its first connection; answers every request on later ones."""
        connections.append(len(connections))
        async for _ in request_heads(stream):
            if len(connections) > 1:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def scenario(env: Env) -> None:
        env.route("slow", await env.raw_backend(silent_once))
        client = await env.client()
        first = await client.request("GET", "/", host="slow.localhost")
        assert first.status == 503 and "connection" not in first.headers
        assert "code=H12" in await env.wait_for_line("slow", "code=")
        second = await client.request("GET", "/", host="slow.localhost")
        assert (second.status, second.text) == (200, "ok")

    run_router(scenario, timeouts=replace(FAST, first_byte=0.3))


async def start_upload_and_stop_sending(env: Env) -> trio.SocketStream:
    """A client that announces 100 bytes of body to app `up` and sends only some."""
    env.route("up", await env.backend(ok))
    sock = await trio.open_tcp_stream("127.0.0.1", env.port)
    await sock.send_all(
        b"POST / HTTP/1.1\r\nHost: up.localhost\r\nContent-Length: 100\r\n\r\nonly-some"
    )
    return sock


def test_h28_when_the_client_stalls_mid_upload() -> None:
    async def scenario(env: Env) -> None:
        sock = await start_upload_and_stop_sending(env)
        with trio.fail_after(5):
            raw = await read_until_closed(sock)
        assert raw.startswith(b"HTTP/1.1 503"), raw[:80]
        assert b"Connection: close" in raw
        line = await env.wait_for_line("up", "code=")
        assert_error(503, line, "H28", "Client Connection Idle")

    run_router(scenario, timeouts=replace(FAST, idle=0.3))


def test_h27_when_the_client_closes_mid_upload() -> None:
    async def scenario(env: Env) -> None:
        sock = await start_upload_and_stop_sending(env)
        await trio.sleep(0.1)
        await sock.aclose()
        line = await env.wait_for_line("up", "code=")
        assert line.startswith('at=info code=H27 desc="Client Request Interrupted"'), line
        assert "status=499" in line
        # The router is still serving.
        assert (await env.get("up.localhost")).text == "ok"

    run_router(scenario)


def test_h15_when_the_app_stalls_mid_response() -> None:
    async def stalls(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await read_until_closed(stream)

    async def scenario(env: Env) -> None:
        env.route("stall", await env.raw_backend(stalls))
        sock = await trio.open_tcp_stream("127.0.0.1", env.port)
        await sock.send_all(b"GET / HTTP/1.1\r\nHost: stall.localhost\r\n\r\n")
        with trio.fail_after(5):
            raw = await read_until_closed(sock)
        assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"partial")
        line = await env.wait_for_line("stall", "code=")
        assert line.startswith('at=error code=H15 desc="Idle connection"'), line
        assert "status=200" in line

    run_router(scenario, timeouts=replace(FAST, idle=0.3))


def test_h13_when_the_app_closes_without_a_response() -> None:
    async def hangs_up(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        await stream.aclose()

    async def scenario(env: Env) -> None:
        env.route("rude", await env.raw_backend(hangs_up))
        reply = await env.get("rude.localhost")
        line = await env.wait_for_line("rude", "code=")
        assert_error(reply.status, line, "H13", "Connection closed without response")
        assert "dyno=web.1" in line

    run_router(scenario)


def test_h18_when_the_app_closes_mid_response() -> None:
    async def cuts_off(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        await stream.aclose()

    async def scenario(env: Env) -> None:
        env.route("cut", await env.raw_backend(cuts_off))
        sock = await trio.open_tcp_stream("127.0.0.1", env.port)
        await sock.send_all(b"GET / HTTP/1.1\r\nHost: cut.localhost\r\n\r\n")
        with trio.fail_after(5):
            raw = await read_until_closed(sock)
        # The client sees the truncation as a close before Content-Length bytes.
        assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"half")
        line = await env.wait_for_line("cut", "code=")
        assert line.startswith('at=error code=H18 desc="Server Request Interrupted"'), line

    run_router(scenario)


def test_h80_maintenance_mode_serves_the_maintenance_page() -> None:
    async def scenario(env: Env) -> None:
        env.route("fixing", await env.backend(ok), maintenance=True)
        reply = await env.get("fixing.localhost")
        assert "maintenance" in reply.text
        line = await env.wait_for_line("fixing", "code=")
        assert_error(reply.status, line, "H80", "Maintenance mode", at="info")

    run_router(scenario)


def test_request_waits_for_a_starting_dyno_then_goes_through() -> None:
    async def scenario(env: Env) -> None:
        env.table.update_app(AppRoute.build("boot", [WebDyno("web.1", "starting")]))
        address = await env.backend(ok)
        replies: list[int] = []
        answered = trio.Event()

        async def request() -> None:
            replies.append((await env.get("boot.localhost")).status)
            answered.set()

        env.nursery.start_soon(request)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert replies == []  # held while the dyno starts
        env.route("boot", address)
        with trio.fail_after(5):
            await answered.wait()
        assert replies == [200]

    run_router(scenario)


def test_h20_when_no_dyno_comes_up_in_time() -> None:
    async def scenario(env: Env) -> None:
        env.table.update_app(AppRoute.build("boot", [WebDyno("web.1", "starting")]))
        reply = await env.get("boot.localhost")
        line = await env.wait_for_line("boot", "code=")
        assert_error(reply.status, line, "H20", "App boot timeout")

    run_router(scenario, timeouts=replace(FAST, boot_wait=0.2))


def test_post_that_reached_the_app_is_never_retried() -> None:
    reached: list[str] = []

    async def takes_then_hangs_up(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        reached.append("first")
        await stream.aclose()

    async def second(request: Request, response: ResponseWriter) -> None:
        reached.append("second")
        await ok(request, response)

    async def scenario(env: Env) -> None:
        env.route("pay", await env.raw_backend(takes_then_hangs_up), await env.backend(second))
        client = await env.client()
        reply = await client.request("POST", "/charge", host="pay.localhost", body=b"amount=5")
        assert reply.status == 503
        assert reached == ["first"]
        assert "code=H13" in await env.wait_for_line("pay", "code=")

    run_router(scenario)


def test_idempotent_get_on_a_reused_connection_closed_by_the_app_is_replayed_once() -> None:
    requests_per_connection: list[int] = []

    async def one_request_per_connection(stream: trio.SocketStream) -> None:
        """Answers the first request, then takes the second and hangs up without answering,
        as a dyno whose keep-alive timeout races the router's reuse would."""
        requests_per_connection.append(0)
        index = len(requests_per_connection) - 1
        async for _ in request_heads(stream):
            requests_per_connection[index] += 1
            if requests_per_connection[index] == 2:
                await stream.aclose()
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def scenario(env: Env) -> None:
        env.route("api", await env.raw_backend(one_request_per_connection))
        client = await env.client()
        assert (await client.request("GET", "/", host="api.localhost")).text == "ok"
        # The second GET goes out on the kept-alive connection, is dropped, and is replayed.
        assert (await client.request("GET", "/", host="api.localhost")).text == "ok"
        assert requests_per_connection[:2] == [2, 1]
        # A POST in the same spot is not replayed.
        reply = await client.request("POST", "/", host="api.localhost", body=b"x")
        assert reply.status == 503
        assert "code=H13" in await env.wait_for_line("api", "method=POST")

    run_router(scenario)


def test_h99_when_the_router_itself_fails() -> None:
    class BrokenTable(RoutingTable):
        def choose(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            raise RuntimeError("a router bug")

    async def scenario(env: Env) -> None:
        env.route("app", await env.backend(ok))
        reply = await env.get("app.localhost")
        assert_error(reply.status, await env.wait_for_line("app", "code="), "H99", "Platform error")

    run_router(scenario, table=BrokenTable(domain="localhost"))


def test_malformed_requests_get_400_and_smuggling_attempts_are_refused() -> None:
    async def scenario(env: Env) -> None:
        env.route("app", await env.backend(ok))
        for raw in (
            b"GET / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: app.localhost\r\n"
            b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: app.localhost\r\n folded: header\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : app.localhost\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
        ):
            sock = await trio.open_tcp_stream("127.0.0.1", env.port)
            await sock.send_all(raw)
            with trio.fail_after(5):
                answer = await read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 400"), (raw, answer[:40])
        assert env.app_lines("app") == []

    run_router(scenario)
