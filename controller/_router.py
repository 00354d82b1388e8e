"""The HTTP router: `http://APP.DOMAIN:PORT/` (and custom domains) to the app's web dynos.

This is waka's Heroku router. It listens on `--router HOST:PORT`, finds the app from the Host
header, forwards each request to one of the app's `up` web dynos on any node, streams bodies both
ways, splices WebSocket upgrades, adds Heroku's headers, logs one `router` line per request to the
app's stream, and answers failures with Heroku's H codes. Details live in the modules it is made
of: `_router_table` (routing state and dyno choice), `_router_proxy` (one request's journey and
its H codes), `_router_headers`, `_router_http1` (the wire), `_router_pool` (upstream keep-alive),
`_router_log`, `_router_metrics`, `_router_traefik`.

The seam with the controller (everything on the controller's trio thread; no SQLite per request):

    table = RoutingTable(domain="localhost")
    router = Router(table, log=lambda app, line: hub.emit(app, line, source="router",
                                                         dyno="router"))
    port = await nursery.start(router.serve, "0.0.0.0", 8080)

    # whenever an app's web dynos, release, formation or maintenance flag change:
    table.update_app(AppRoute.build(app, [WebDyno(name, state, "10.0.0.5:20000", release), ...],
                                    maintenance=False))
    table.remove_app(app)                         # app destroyed
    table.set_domains({"example.home.lan": app})  # every custom domain, whenever one changes
    # before stopping a web dyno (new dynos already up and in the table):
    table.drain(address)
    with trio.move_on_after(grace):
        await table.wait_drained(address)         # or poll table.in_flight(address)
    # ...then SIGTERM, and update_app without it once the agent reports it gone.

Metrics: `GET /metrics` (Prometheus text), and `GET /traefik.json` (the routing table in Traefik's
HTTP-provider format) are answered for the router's own hosts only: the bare
DOMAIN (`localhost` by default), `localhost`, or an IP literal, i.e. `curl
http://127.0.0.1:PORT/metrics`. Those hosts are checked after app resolution, so an app (or a
custom domain) is never shadowed: a host that routes to an app always reaches the app.

HTTP/1.0 clients are served one request per connection (HTTP/1.1 keeps connections alive).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Sequence

import trio

from waka.controller._router_headers import (
    forwarded_for,
    forwarded_scheme,
    is_upgrade,
    request_id,
    simple_response,
)
from waka.controller._router_http1 import (
    NO_BODY,
    Conn,
    PeerClosed,
    ProtocolError,
    RequestHead,
    parse_request_head,
)
from waka.controller._router_log import BAD_REQUEST_PAGE, NO_SUCH_APP_PAGE
from waka.controller._router_metrics import CONTENT_TYPE, RouterMetrics
from waka.controller._router_pool import UpstreamPool
from waka.controller._router_proxy import AppRequest, LogSink, Proxy, RouterTimeouts
from waka.controller._router_table import (
    AppRoute,
    Backend,
    RoutingTable,
    WebDyno,
    normalize_host,
)
from waka.controller._router_traefik import traefik_config
from waka.controller._router_watchdog import Timer, Watchdog

log = logging.getLogger(__name__)

POOL_SWEEP_INTERVAL = 1.0
WATCHDOG_TICK_MAX = 0.25
WATCHDOG_TICK_MIN = 0.005
LISTEN_BACKLOG = 1024
ACCEPT_BATCH = 64
ACCEPT_BACKOFF = 0.1
ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

__all__ = ["AppRoute", "Backend", "Router", "RouterTimeouts", "RoutingTable", "WebDyno"]


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Router:
    def __init__(
        self,
        table: RoutingTable,
        *,
        log: LogSink,
        timeouts: RouterTimeouts | None = None,
        clock: Callable[[], float] = time.time,
        proto: str = "http",
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        """`log(app, line)` receives each router line; `clock` is the wall clock (X-Request-Start).

        `proto` is what X-Forwarded-Proto says. `trusted_proxies` are networks (CIDR) of proxies
        in front, such as a TLS terminator: what their X-Forwarded-Proto and X-Forwarded-Port say
        is passed on, where anyone else's is replaced. A bad network raises ValueError.
        """
        self.table = table
        self.timeouts = timeouts or RouterTimeouts()
        self.metrics = RouterMetrics()
        self._clock = clock
        self._proto = proto
        self._trusted = trusted_networks(trusted_proxies)
        self._pool = UpstreamPool(idle_timeout=self.timeouts.upstream_keepalive)
        self._watchdog = Watchdog(watchdog_tick(self.timeouts))
        self._proxy = Proxy(table, self._pool, self.metrics, log, self.timeouts)

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves until cancelled; `nursery.start` returns the bound port (port 0 picks one)."""
        listener = await _listen(host, port)
        # trio.current_time() looks the clock up through three calls; the router asks it
        # several times per request.
        self._proxy.now = trio.lowlevel.current_clock().current_time
        bound_port = int(listener.getsockname()[1])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep_pool)
                nursery.start_soon(self._watchdog.run)
                log.info("router on %s:%d for *.%s", host, bound_port, self.table.domain)
                task_status.started(bound_port)
                await self._accept(listener, nursery)
        finally:
            trio.lowlevel.notify_closing(listener)
            listener.close()
            self._pool.close()

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            for _ in range(ACCEPT_BATCH):
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as error:
                    if error.errno in ACCEPT_RESOURCE_ERRORS:
                        # Out of file descriptors or memory: let connections finish, then retry.
                        log.error("router: cannot accept connections: %s", error)
                        await trio.sleep(ACCEPT_BACKOFF)
                    break
                nursery.start_soon(self._serve_client, sock)

    async def _sweep_pool(self) -> None:
        while True:
            await trio.sleep(POOL_SWEEP_INTERVAL)
            self._pool.sweep(trio.current_time(), keep=self.table.live_addresses())

    async def _serve_client(self, sock: socket.socket) -> None:
        client = Conn(sock)
        client_ip, local_port = _addresses(sock)
        trusted = bool(self._trusted) and _is_within(client_ip, self._trusted)
        keepalive = self.timeouts.client_keepalive
        now = self._proxy.now
        timer: Timer | None = None
        try:
            while True:
                # One scope and timer for the connection, not one per request: the timer is the
                # keep-alive deadline while a request head is awaited, and each request's own
                # deadlines (`Proxy._exchange`) while it is served. A request that timed out
                # has cancelled the scope; if the connection may go on, it gets a new one.
                with trio.CancelScope() as scope:
                    timer = self._watchdog.arm(scope, math.inf)
                    while not timer.fired:
                        timer.at = now() + keepalive
                        raw = await client.read_head()
                        if raw is None:
                            return
                        timer.at = math.inf
                        received = now()
                        try:
                            head = parse_request_head(raw)
                            keep = await self._dispatch(
                                client, head, received, client_ip, local_port, timer, trusted
                            )
                        except (ProtocolError, _BadRequest) as error:
                            await client.send(
                                simple_response(error.status, BAD_REQUEST_PAGE, close=True)
                            )
                            return
                        if not keep:
                            return
                if scope.cancelled_caught:  # the keep-alive deadline passed
                    return
                self._watchdog.disarm(timer)
        except ProtocolError as error:  # a head too large to be a request
            log.debug("router: bad request from %s: %s", client_ip, error)
            with contextlib.suppress(PeerClosed):
                await client.send(simple_response(error.status, BAD_REQUEST_PAGE, close=True))
        except PeerClosed:
            pass
        except Exception:
            # One broken connection must never take the router down with it.
            log.exception("router: connection from %s failed", client_ip)
        finally:
            if timer is not None:
                self._watchdog.disarm(timer)
            client.close()

    async def _dispatch(
        self,
        client: Conn,
        head: RequestHead,
        received: float,
        client_ip: bytes,
        port: int,
        timer: Timer,
        trusted: bool,
    ) -> bool:
        """Serves one request; True if the connection may carry another. `trusted`: the client
        is a proxy whose X-Forwarded-Proto/Port are kept."""
        target, host_value = _target_and_host(head)
        host = _normalize_host(host_value)
        keep_alive = head.version == b"1.1" and b"close" not in head.connection
        app = self.table.resolve(host)
        route = self.table.route(app) if app is not None else None
        if app is None or route is None:
            return await self._serve_router_host(client, head, host, target, keep_alive)
        proto = self._proto
        if trusted:
            proto, port = forwarded_scheme(head, proto, port)
        request = AppRequest(
            head=head,
            app=app,
            host=host,
            target=target,
            forwarded_for=forwarded_for(head, client_ip),
            port=port,
            proto=proto,
            received=received,
            start_ms=int(self._clock() * 1000),
            request_id=request_id(head.get(b"x-request-id")),
            keep_alive=keep_alive,
            upgrade=is_upgrade(head),
            timer=timer,
        )
        return await self._proxy.handle(client, request, route)

    async def _serve_router_host(
        self, client: Conn, head: RequestHead, host: str, target: bytes, keep_alive: bool
    ) -> bool:
        """Requests for no app: metrics on the router's own hosts, a 404 page otherwise."""
        # The body of such a request is not read; closing is simpler than draining it.
        keep = keep_alive and head.framing == NO_BODY
        head_only = head.method == b"HEAD"
        path = target.partition(b"?")[0]
        own = head.method in (b"GET", b"HEAD") and self._is_router_host(host)
        if own and path == b"/metrics":
            body = self.metrics.render(self.table.in_flight_by_address()).encode()
            await client.send(
                simple_response(
                    200, body, content_type=CONTENT_TYPE, close=not keep, head_only=head_only
                )
            )
            return keep
        if own and path == b"/traefik.json":
            # For a homelab's own Traefik: its HTTP provider polls this routing table.
            body = json.dumps(traefik_config(self.table)).encode()
            await client.send(
                simple_response(
                    200,
                    body,
                    content_type="application/json",
                    close=not keep,
                    head_only=head_only,
                )
            )
            return keep
        self.metrics.unknown_host += 1
        await client.send(
            simple_response(404, NO_SUCH_APP_PAGE, close=not keep, head_only=head_only)
        )
        return keep

    def _is_router_host(self, host: str) -> bool:
        if host in (self.table.domain, "localhost"):
            return True
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return True


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(specs: Sequence[str]) -> tuple[Network, ...]:
    """`127.0.0.1`, `10.0.0.0/8`, `::1` -> networks; ValueError naming a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{spec!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _is_within(ip: bytes, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip.decode())
    except ValueError:
        return False
    return any(address in network for network in networks)


def watchdog_tick(timeouts: RouterTimeouts) -> float:
    """A tenth of the shortest request timeout, so none fires more than 10% late."""
    shortest = min(timeouts.first_byte, timeouts.idle, timeouts.client_keepalive)
    return max(WATCHDOG_TICK_MIN, min(WATCHDOG_TICK_MAX, shortest / 10))


@functools.lru_cache(maxsize=1024)
def _normalize_host(value: bytes) -> str:
    """`normalize_host` of a Host header as sent: a client sends the same one on every request."""
    return normalize_host(value.decode("latin-1"))


def _target_and_host(head: RequestHead) -> tuple[bytes, bytes]:
    """The origin-form target for the dyno and the host the request is for (RFC 9112 3.2)."""
    hosts = [value for lower, _, value in head.headers if lower == b"host"]
    if len(hosts) > 1:
        raise _BadRequest("more than one Host header")
    if not hosts and head.version == b"1.1":
        raise _BadRequest("no Host header")
    target = head.target
    if target.startswith(b"/"):
        return target, hosts[0] if hosts else b""
    if head.method == b"OPTIONS" and target == b"*":
        return target, hosts[0] if hosts else b""
    scheme, sep, rest = target.partition(b"://")
    if sep and scheme.lower() in (b"http", b"https"):
        # Absolute form: the URL's authority is the host, whatever the Host header says.
        end = len(rest)
        for delimiter in (b"/", b"?"):
            index = rest.find(delimiter)
            if 0 <= index < end:
                end = index
        authority, path = rest[:end], rest[end:]
        authority = authority.rpartition(b"@")[2]
        if not path.startswith(b"/"):
            path = b"/" + path
        return path, authority
    raise _BadRequest("unsupported request target form")


async def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = (
        await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


def _addresses(sock: socket.socket) -> tuple[bytes, int]:
    """The client's IP and the local port it connected to."""
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
    except OSError:
        return b"", 0
    ip = str(peer[0])
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[len("::ffff:") :]
    return ip.encode(), int(local[1])
