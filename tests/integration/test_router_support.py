"""Shared by the router tests (no tests here): a router on a free port, backends, a client.

Everything runs in one trio loop on 127.0.0.1: the router under test, the backends (real HTTP
servers: waka's own h11 server, or raw sockets for misbehaving apps), and the clients.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import h11
import trio

from waka.controller._http import Request, ResponseWriter, serve_http
from waka.controller._router import Router, RouterTimeouts
from waka.controller._router_table import AppRoute, RoutingTable, WebDyno

DEADLINE = 30.0
FAST = RouterTimeouts(
    connect=2.0,
    first_byte=5.0,
    idle=5.0,
    boot_wait=5.0,
    client_keepalive=10.0,
    upstream_keepalive=5.0,
    quarantine=5.0,
)


@dataclass
class Env:
    table: RoutingTable
    router: Router
    port: int
    nursery: trio.Nursery
    lines: list[tuple[str, str]] = field(default_factory=list)

    def app_lines(self, app: str) -> list[str]:
        return [line for a, line in self.lines if a == app]

    def route(self, app: str, *addresses: str, **flags: bool) -> None:
        """Routes `app` to backends web.1, web.2... at `addresses`."""
        dynos = [WebDyno(f"web.{i}", "up", a, 1) for i, a in enumerate(addresses, 1)]
        self.table.update_app(
            AppRoute.build(app, dynos, maintenance=flags.get("maintenance", False))
        )

    async def backend(self, handler: Callable[[Request, ResponseWriter], Awaitable[None]]) -> str:
        """An HTTP backend (waka's h11 server) on a free port; returns its address."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        await self.nursery.start(partial(serve_http, handler, listeners, idle_timeout=30.0))
        return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    async def raw_backend(self, handler: Callable[[trio.SocketStream], Awaitable[None]]) -> str:
        """A backend that gets each raw connection (to misbehave at will)."""
        listeners = await self.nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    async def client(self) -> Client:
        return Client(await trio.open_tcp_stream("127.0.0.1", self.port))

    async def get(self, host: str, target: str = "/", **kwargs: object) -> Reply:
        client = await self.client()
        try:
            return await client.request("GET", target, host=host, **kwargs)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    async def wait_for_line(self, app: str, needle: str) -> str:
        with trio.fail_after(10):
            while True:
                for line in self.app_lines(app):
                    if needle in line:
                        return line
                await trio.sleep(0.01)


def run_router(
    scenario: Callable[[Env], Awaitable[None]],
    *,
    timeouts: RouterTimeouts = FAST,
    domain: str = "localhost",
    table: RoutingTable | None = None,
    trusted_proxies: tuple[str, ...] = (),
) -> None:
    async def main() -> None:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                routing = table or RoutingTable(domain=domain)
                env_lines: list[tuple[str, str]] = []
                router = Router(
                    routing,
                    log=lambda app, line: env_lines.append((app, line)),
                    timeouts=timeouts,
                    trusted_proxies=trusted_proxies,
                )
                port = await nursery.start(router.serve, "127.0.0.1", 0)
                await scenario(Env(routing, router, port, nursery, env_lines))
                nursery.cancel_scope.cancel()

    trio.run(main)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class Client:
    """One HTTP/1.1 connection to the router, driven with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, *events: h11.Event) -> None:
        for event in events:
            await self.stream.send_all(self.h11.send(event) or b"")

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
                continue
            assert isinstance(event, h11.Event)
            return event

    async def head(self) -> h11.Response:
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Response):
                return event
            assert isinstance(event, h11.InformationalResponse), event

    async def body(self) -> bytes:
        parts = []
        while isinstance(event := await self.next_event(), h11.Data):
            parts.append(bytes(event.data))
        assert isinstance(event, h11.EndOfMessage), event
        return b"".join(parts)

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        all_headers = [("Host", host), *(headers or [])]
        if body is not None:
            all_headers.append(("Content-Length", str(len(body))))
        await self.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        response = await self.head()
        data = await self.body()
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return Reply(
            response.status_code,
            {k.decode().lower(): v.decode() for k, v in response.headers},
            data,
        )

    async def aclose(self) -> None:
        await self.stream.aclose()


async def read_until_closed(stream: trio.SocketStream, limit: float = math.inf) -> bytes:
    data = b""
    while len(data) < limit and (chunk := await stream.receive_some(65536)):
        data += chunk
    return data


async def echo_headers(request: Request, response: ResponseWriter) -> None:
    """Answers with the request line and headers it got, one per line."""
    while await request.body.receive_some():
        pass
    lines = [f"{request.method} {request.target}"] + [f"{k}: {v}" for k, v in request.headers]
    body = ("\n".join(lines) + "\n").encode()
    await response.start(200, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    await response.write(body)


def headers_of(reply: Reply) -> dict[str, list[str]]:
    """The headers echo_headers reported, name -> values."""
    seen: dict[str, list[str]] = {}
    for line in reply.text.splitlines()[1:]:
        name, _, value = line.partition(": ")
        seen.setdefault(name, []).append(value)
    return seen
