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

    .venv/bin/python bench/router.py [--duration 5] [--connections 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from waka.controller._logs import LogHub
from waka.controller._router import AppRoute, Router, RoutingTable, WebDyno

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


def serve_app(port: int) -> None:
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
    parser.add_argument("--serve-app", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-router", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        serve_app(args.serve_app)
        return
    if args.serve_router:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        serve_router(*args.serve_router)
        return

    use_wrk = shutil.which("wrk") is not None and not args.python_client
    load = run_wrk if use_wrk else run_python_client
    app_port, router_port = free_port(), free_port()
    processes = [start("--serve-app", str(app_port))]
    try:
        processes.append(start("--serve-router", str(router_port), str(app_port)))
        wait_listening(app_port)
        wait_listening(router_port)
        host = f"{APP}.localhost"
        load(router_port, host, 4, 1.0)  # warm up both paths
        load(app_port, host, 4, 1.0)
        results: dict[tuple[str, int], list[Result]] = {}
        for _ in range(args.rounds):
            for connections in (1, args.connections):
                for path, port in (("direct", app_port), ("router", router_port)):
                    result = load(port, host, connections, args.duration)
                    results.setdefault((path, connections), []).append(result)
    finally:
        for process in processes:
            stop(process)

    def median(path: str, connections: int, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[(path, connections)])

    print(
        f"load generator: {'wrk' if use_wrk else 'python client'}; "
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
    overhead = median("router", 1, "p50_ms") - median("direct", 1, "p50_ms")
    share = median("router", args.connections, "rps") / median("direct", args.connections, "rps")
    print(f"router overhead at p50 (1 connection): {overhead:.3f} ms (target < 1 ms)")
    print(
        f"router throughput at {args.connections} connections: {share:.0%} of direct "
        "(target >= 50%)"
    )


if __name__ == "__main__":
    main()
