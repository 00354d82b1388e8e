"""The one place where grpcio's threads meet the controller's trio loop.

grpcio's sync server runs each RPC on a pool thread. Handlers cross into trio with `run` (an async
function) or `run_sync`, carrying whole batches across rather than single items: every crossing
costs about 100 µs.

A client stream is read from trio by `next_request`, which blocks a worker thread until the next
message. Every agent keeps its session stream open, so each agent holds one such thread for as long
as it is connected: under trio's default limit of 40 threads, the 41st agent's messages would not
be read until another agent left. Stream readers therefore have their own limiter, as large as the
number of RPCs the gRPC server runs at once (each reader belongs to one of those RPCs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
import trio

T = TypeVar("T")

# Without set_stream_readers (tests that run handlers directly), a generous fixed limit.
DEFAULT_STREAM_READERS = 1000
_readers: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("waka_stream_readers")


class Bridge:
    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token

    @classmethod
    def here(cls) -> Bridge:
        """A bridge to the trio loop this is called from."""
        return cls(trio.lowlevel.current_trio_token())

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedules fn on the loop without waiting; safe from any thread, even while it stops."""
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)


def _next_or_none(requests: Iterator[T]) -> T | None:
    try:
        return next(requests, None)
    except grpc.RpcError:
        return None


def set_stream_readers(total: int) -> None:
    """How many client streams may be read at once in this trio run: the gRPC server's limit of
    concurrent RPCs (call from the run, before the server starts)."""
    _readers.set(trio.CapacityLimiter(total))


def _stream_readers() -> trio.CapacityLimiter:
    try:
        return _readers.get()
    except LookupError:
        limiter = trio.CapacityLimiter(DEFAULT_STREAM_READERS)
        _readers.set(limiter)
        return limiter


async def next_request(requests: Iterator[T]) -> T | None:
    """The next message of a client's stream, read on a worker thread; None once it ends."""
    return await trio.to_thread.run_sync(
        _next_or_none, requests, abandon_on_cancel=True, limiter=_stream_readers()
    )
