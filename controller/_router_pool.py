"""Upstream connections: opening them with a deadline, and keeping idle ones per dyno for reuse.

Reusing a kept-alive connection saves a TCP handshake and a trio task switch or two per request
(about a third of the router's cost per small request on loopback). A dyno may close an idle
connection at any moment (gunicorn's keep-alive is 2 s), so an idle connection is checked before
reuse: if it has become readable while idle (end of stream, a reset, or stray bytes), it is
discarded. What remains is the race of a close in flight while the request is sent; the router
handles that (see `_router_proxy`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
from collections import deque

import trio

from waka.controller._router_http1 import Conn

DEFAULT_MAX_IDLE_PER_BACKEND = 128


class ConnectFailed(Exception):
    def __init__(self, address: str, reason: str, *, timed_out: bool) -> None:
        super().__init__(f"cannot connect to {address}: {reason}")
        self.timed_out = timed_out


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not a HOST:PORT address")
    return host.strip("[]"), int(port)


async def open_connection(address: str, connect_timeout: float) -> Conn:
    """A new TCP connection to `address`, or ConnectFailed (refused, unreachable, timed out)."""
    host, port = split_host_port(address)
    with trio.move_on_after(connect_timeout):
        try:
            return Conn(await _connect(host, port))
        except OSError as error:
            reason = errno.errorcode.get(error.errno or 0, "") or str(error)
            raise ConnectFailed(address, reason, timed_out=False) from error
    raise ConnectFailed(address, f"no connection within {connect_timeout:g}s", timed_out=True)


async def _connect(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        # A name (dyno addresses are normally IP literals): resolve it off the loop.
        family, _, _, _, sockaddr = (
            await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        )[0]
        host, port = str(sockaddr[0]), int(sockaddr[1])
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        error = sock.connect_ex((host, port))
        if error == errno.EINPROGRESS:
            await trio.lowlevel.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
    except BaseException:
        sock.close()
        raise
    return sock


def went_stale(conn: Conn) -> bool:
    """True if an idle connection became readable: the peer closed it or broke protocol."""
    try:
        poller = select.poll()
        poller.register(conn.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class UpstreamPool:
    """Idle kept-alive connections, per dyno address, most recently used first."""

    def __init__(
        self, *, idle_timeout: float, max_idle_per_backend: int = DEFAULT_MAX_IDLE_PER_BACKEND
    ) -> None:
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle_per_backend
        self._idle: dict[str, deque[tuple[float, Conn]]] = {}

    def checkout(self, address: str, now: float) -> Conn | None:
        """A live idle connection to `address`, or None."""
        idle = self._idle.get(address)
        while idle:
            since, conn = idle.pop()
            if now - since < self._idle_timeout and not went_stale(conn):
                return conn
            conn.close()
        return None

    def checkin(self, address: str, conn: Conn, now: float) -> None:
        """Keeps a connection whose last exchange ended cleanly."""
        idle = self._idle.get(address)
        if idle is None:
            idle = self._idle[address] = deque()
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.received = conn.sent = 0
        idle.append((now, conn))

    def idle_count(self, address: str) -> int:
        idle = self._idle.get(address)
        return len(idle) if idle else 0

    def sweep(self, now: float, keep: set[str] | None = None) -> None:
        """Closes expired and stale idle connections, and all those to addresses not in `keep`."""
        for address in list(self._idle):
            idle = self._idle.pop(address)
            fresh: deque[tuple[float, Conn]] = deque()
            for since, conn in idle:
                if (
                    (keep is None or address in keep)
                    and now - since < self._idle_timeout
                    and not went_stale(conn)
                ):
                    fresh.append((since, conn))
                else:
                    conn.close()
            if fresh:
                self._idle[address] = fresh

    def close(self) -> None:
        for idle in self._idle.values():
            for _, conn in idle:
                conn.close()
        self._idle.clear()
