"""Router benchmark: requests/s and latency through the router, and straight to the app, same run.

A minimal HTTP/1.1 app (asyncio, keep-alive, a 12-byte body) runs in its own process; the router
runs in another, exactly as the controller runs it (a RoutingTable with one app, router lines
going into a real LogHub). A load generator drives both: `wrk` (Debian package `wrk`) when it is
installed, else a Python client with many keep-alive connections (slower: it competes for the
same 2 cores, so its figures are lower for both paths).

Two load shapes:
- one connection, one request at a time: latency, where p50(router) - p50(direct) is the
  router's overhead per request;
- many connections: throughput, router as a share of direct.

`--app stdlib` replaces the app with one written the plain way, on the standard library's
`http.server` (a thread per connection, HTTP/1.1 keep-alive): about what a small Python app
answers, to set the router's cost against an app that does a little work per request.

`--relay-baselines` adds relays with no routing at all at the many-connection load, for scale:
a bare asyncio Protocol relay (one upstream connection per client connection, finding only where
each request head ends), a bare trio relay built from the router's own socket layer (`Conn`,
one task per client connection, Content-Length framing only), and, when Debian's `haproxy` is
installed, HAProxy in HTTP mode with one server, no logging and no added headers: a compiled
production proxy doing less than the router does, so the most any relay gets on this machine;
and HAProxy doing what the router does (`haproxy-full`): the app found from the Host header
through a map, Heroku's headers (X-Forwarded-*, X-Request-Start, X-Request-Id kept when valid
and made otherwise, Via), and a log line per request sent to a unix socket, where a Python
process turns each into a Heroku router line in a LogHub, as a controller driving HAProxy would.

    .venv/bin/python bench/router.py [--duration 5] [--connections 50] [--rounds 2]
                                     [--app asyncio|stdlib] [--relay-baselines]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from waka.controller._logs import LogHub
from waka.controller._router import AppRoute, Router, RoutingTable, WebDyno
from waka.controller._router_http1 import Conn, PeerClosed
from waka.controller._router_pool import open_connection

REPO = Path(__file__).resolve().parent.parent
APP = "bench"
BODY = b"hello world\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b" % (
    len(BODY),
    BODY,
)


# -- the app --------------------------------------------------------------------------------------


class _AppProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]
            self.transport.write(RESPONSE)


class _StdlibHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the asyncio app
    # Headers and body go out in separate writes; with Nagle's algorithm each response would
    # wait for the client's delayed ACK (40 ms). App servers set TCP_NODELAY too.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_app(port: int, kind: str = "asyncio") -> None:
    if kind == "stdlib":
        http.server.ThreadingHTTPServer.request_queue_size = 1024
        http.server.ThreadingHTTPServer(("127.0.0.1", port), _StdlibHandler).serve_forever()
        return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_AppProtocol, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


# -- the router -----------------------------------------------------------------------------------


def serve_router(port: int, app_port: int) -> None:
    hub = LogHub()

    async def main() -> None:
        table = RoutingTable(domain="localhost")
        table.update_app(AppRoute.build(APP, [WebDyno("web.1", "up", f"127.0.0.1:{app_port}")]))
        router = Router(
            table, log=lambda app, line: hub.emit(app, line, source="router", dyno="router")
        )
        await router.serve("127.0.0.1", port)

    trio.run(main)


# -- relays with no routing (baselines) -----------------------------------------------------------


class _RelayToClient(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)  # responses pass through as they come

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _RelayFromClient(asyncio.Protocol):
    """Forwards each complete request head (the bench sends no bodies) to its own upstream."""

    def __init__(self, app_port: int) -> None:
        self.app_port = app_port
        self.upstream: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(
            lambda: _RelayToClient(self.transport), "127.0.0.1", self.app_port
        )
        self.upstream = upstream
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        assert self.upstream is not None
        self.buffer += data
        end = self.buffer.rfind(b"\r\n\r\n") + 4
        if end >= 4:
            self.upstream.write(self.buffer[:end])
            self.buffer = self.buffer[end:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


def serve_asyncio_relay(port: int, app_port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _RelayFromClient(app_port), "127.0.0.1", port, backlog=1024
        )
        await server.serve_forever()

    asyncio.run(main())


def serve_trio_relay(port: int, app_port: int) -> None:
    content_length = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")

    async def relay(sock: socket.socket) -> None:
        client = Conn(sock)
        upstream = await open_connection(f"127.0.0.1:{app_port}", 5.0)
        try:
            while (head := await client.read_head()) is not None:
                await upstream.send(head)
                response = await upstream.read_head()
                assert response is not None
                length = int(content_length.search(response).group(1))  # type: ignore[union-attr]
                while len(upstream.buffer) < length:
                    upstream.buffer += await upstream.read_some()
                body = bytes(upstream.buffer[:length])
                del upstream.buffer[:length]
                await client.send(response + body)
        except (PeerClosed, AssertionError):
            pass
        finally:
            client.close()
            upstream.close()

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", port), backlog=1024)
        listener.setblocking(False)
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(listener)
                with contextlib.suppress(BlockingIOError):
                    nursery.start_soon(relay, listener.accept()[0])

    trio.run(main)


HAPROXY_CONFIG = """\
global
  nbthread 1
{log_global}
defaults
  mode http
  timeout connect 5s
  timeout client 55s
  timeout server 30s
frontend relay
  bind 127.0.0.1:{port}
{frontend}
backend {app}
  http-reuse always
  server web.1 127.0.0.1:{app_port}
"""
HAPROXY_BARE = "  default_backend {app}"
# What waka's router does per request, in HAProxy's words; the log line carries the app first.
HAPROXY_FULL = """\
  log global
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Request-Start %[date(0,ms)]
  http-request set-header X-Request-Id %[uuid()] \
    unless {{ req.hdr(x-request-id) -m reg ^[A-Za-z0-9+/=-]{{20,200}}$ }}
  http-request set-header Via "1.1 waka"
  http-request set-var(txn.host) req.hdr(host),host_only,lower
  http-request set-var(txn.app) var(txn.host),map({map})
  http-request set-var(txn.rid) req.hdr(x-request-id)
  use_backend %[var(txn.app)]
  log-format "%[var(txn.app)] %HM %ST %B %Tc %Tr %s %ci %[var(txn.host)] %[var(txn.rid)] %HPO"
"""


def start_haproxy(
    port: int, app_port: int, workdir: Path, log_socket: Path | None = None
) -> subprocess.Popen[bytes]:
    """HAProxy in the foreground (`-db`) with one thread: the app and wrk share the 2 cores.
    With `log_socket`, the `haproxy-full` configuration logging there."""
    if log_socket is None:
        frontend, log_global = HAPROXY_BARE.format(app=APP), ""
    else:
        hosts = workdir / "hosts.map"
        hosts.write_text(f"{APP}.localhost {APP}\n")
        frontend = HAPROXY_FULL.format(map=hosts)
        log_global = f"  log {log_socket} len 4096 local0"
    config = workdir / f"haproxy-{port}.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            port=port, app_port=app_port, app=APP, frontend=frontend, log_global=log_global
        )
    )
    return subprocess.Popen(["haproxy", "-db", "-f", str(config)])


def serve_haproxy_log(path: str) -> None:
    """Reads HAProxy's log datagrams and publishes each as a router line of its app."""
    hub = LogHub()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    while True:
        datagram = sock.recv(8192).decode("utf-8", "replace")
        # `<134>Nov 26 15:04:05 haproxy[123]: FIELDS`: the message follows "]: ".
        fields = datagram.partition("]: ")[2].rstrip("\n").split(" ", 10)
        if len(fields) != 11:
            continue
        app, method, status, sent, connect, service, dyno, fwd, host, rid, path = fields
        hub.emit(
            app,
            f'at=info method={method} path="{path}" host={host} request_id={rid} fwd="{fwd}"'
            f" dyno={dyno} connect={connect}ms service={service}ms status={status}"
            f" bytes={sent} protocol=http",
            source="router",
            dyno="router",
        )


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", text)
    if not match:
        raise RuntimeError(f"no {label}% latency in wrk output:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(port: int, host: str, connections: int, duration: float) -> Result:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-H",
            f"Host: {host}",
            f"http://127.0.0.1:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    socket_errors = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    if match := re.search(socket_errors, out):
        errors += sum(int(g) for g in match.groups())
    return Result(rps, _wrk_ms(out, "50"), _wrk_ms(out, "99"), errors)


def run_python_client(port: int, host: str, connections: int, duration: float) -> Result:
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0

    async def one(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(one(deadline) for _ in range(connections)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    return Result(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        errors,
    )


# -- orchestration --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def wait_for_path(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=REPO)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--app",
        choices=("asyncio", "stdlib"),
        default="asyncio",
        help="the app behind the router: a raw asyncio server (the fastest Python answers) or"
        " one on the standard library's http.server",
    )
    parser.add_argument(
        "--relay-baselines",
        action="store_true",
        help="also measure bare asyncio and trio relays (no routing) at --connections",
    )
    parser.add_argument("--serve-app", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-router", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-asyncio-relay", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-trio-relay", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-haproxy-log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        serve_app(args.serve_app, args.app)
        return
    if args.serve_haproxy_log:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        serve_haproxy_log(args.serve_haproxy_log)
        return
    servers = {
        "serve_router": serve_router,
        "serve_asyncio_relay": serve_asyncio_relay,
        "serve_trio_relay": serve_trio_relay,
    }
    for option, serve in servers.items():
        if getattr(args, option):
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            serve(*getattr(args, option))
            return

    use_wrk = shutil.which("wrk") is not None and not args.python_client
    load = run_wrk if use_wrk else run_python_client
    app_port, router_port = free_port(), free_port()
    relays = {"asyncio": free_port(), "trio": free_port()} if args.relay_baselines else {}
    if args.relay_baselines and shutil.which("haproxy"):
        relays["haproxy"] = free_port()
        relays["haproxy-full"] = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="waka-bench-router-"))
    processes = [start("--serve-app", str(app_port), "--app", args.app)]
    try:
        processes.append(start("--serve-router", str(router_port), str(app_port)))
        for kind, port in relays.items():
            if kind == "haproxy":
                processes.append(start_haproxy(port, app_port, workdir))
            elif kind == "haproxy-full":
                log_socket = workdir / "log.sock"
                processes.append(start("--serve-haproxy-log", str(log_socket)))
                wait_for_path(log_socket)
                processes.append(start_haproxy(port, app_port, workdir, log_socket))
            else:
                processes.append(start(f"--serve-{kind}-relay", str(port), str(app_port)))
        host = f"{APP}.localhost"
        for port in (app_port, router_port, *relays.values()):
            wait_listening(port)
            load(port, host, 4, 1.0)  # warm up every path
        results: dict[tuple[str, int], list[Result]] = {}
        for _ in range(args.rounds):
            for connections in (1, args.connections):
                for path, port in (("direct", app_port), ("router", router_port)):
                    result = load(port, host, connections, args.duration)
                    results.setdefault((path, connections), []).append(result)
            for kind, port in relays.items():
                result = load(port, host, args.connections, args.duration)
                results.setdefault((f"{kind}-relay", args.connections), []).append(result)
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)

    def median(path: str, connections: int, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[(path, connections)])

    print(
        f"load generator: {'wrk' if use_wrk else 'python client'}; app: {args.app}; "
        f"{args.rounds} rounds of {args.duration:g}s each, medians"
    )
    print(f"{'path':<8} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for connections in (1, args.connections):
        for path in ("direct", "router"):
            errors = sum(r.errors for r in results[(path, connections)])
            print(
                f"{path:<8} {connections:>5} {median(path, connections, 'rps'):>9.0f} "
                f"{median(path, connections, 'p50_ms'):>8.3f} "
                f"{median(path, connections, 'p99_ms'):>8.3f} {errors:>6}"
            )
    direct_rps = median("direct", args.connections, "rps")
    for kind in relays:
        path = f"{kind}-relay"
        errors = sum(r.errors for r in results[(path, args.connections)])
        rps = median(path, args.connections, "rps")
        print(
            f"{path:<18} {args.connections:>3} {rps:>9.0f} "
            f"{median(path, args.connections, 'p50_ms'):>8.3f} "
            f"{median(path, args.connections, 'p99_ms'):>8.3f} {errors:>6}"
            f"  ({rps / direct_rps:.0%} of direct)"
        )
    overhead = median("router", 1, "p50_ms") - median("direct", 1, "p50_ms")
    share = median("router", args.connections, "rps") / direct_rps
    print(f"router overhead at p50 (1 connection): {overhead:.3f} ms (target < 1 ms)")
    print(
        f"router throughput at {args.connections} connections: {share:.0%} of direct "
        "(target >= 50%)"
    )


if __name__ == "__main__":
    main()
