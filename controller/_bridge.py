"""The one place where grpcio's threads meet the controller's trio loop.

grpcio's sync server runs each RPC on a pool thread. Handlers cross into trio with `run` (an async
function) or `run_sync`, carrying whole batches across rather than single items: every crossing
costs about 100 µs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
import trio

T = TypeVar("T")


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


async def next_request(requests: Iterator[T]) -> T | None:
    """The next message of a client's stream, read on a worker thread; None once it ends."""
    return await trio.to_thread.run_sync(_next_or_none, requests, abandon_on_cancel=True)
