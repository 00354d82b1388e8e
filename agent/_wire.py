"""The agent's connection to the controller, and the one place grpcio's threads meet trio here.

grpcio's sync client consumes a request iterator on its own thread and hands back a blocking
response iterator. `Outbox` feeds the first from trio through a thread-safe queue; `responses`
drains the second from a worker thread, one message per crossing (these streams carry batches).
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import grpc
import trio

from waka.v1 import agent_pb2 as pb
from waka.v1 import agent_pb2_grpc as pb_grpc

T = TypeVar("T")
_CLOSE = object()
SERVER_NAME = "waka-controller"

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class Outbox(Generic[T]):
    """A request iterator for a streaming call that trio code can put messages into."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, message: T) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(_CLOSE)

    def __iter__(self) -> Iterator[T]:
        while (item := self._queue.get()) is not _CLOSE:
            yield item


def _next_or_end(iterator: Iterator[T]) -> T | object:
    return next(iterator, _CLOSE)


async def responses(call: Iterator[T]) -> AsyncIterator[T]:
    """Yields a streaming call's responses; raises grpc.RpcError if the stream breaks."""
    try:
        while True:
            item = await trio.to_thread.run_sync(_next_or_end, call, abandon_on_cancel=True)
            if item is _CLOSE:
                return
            yield item  # type: ignore[misc]
    finally:
        cancel = getattr(call, "cancel", None)
        if cancel is not None:
            cancel()


class Controller:
    """A mutual-TLS channel to the controller's agent port, as this node."""

    def __init__(self, address: str, *, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        self.address = address
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
        # The agent port's certificate names `waka-controller`, whatever address reaches it.
        options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", SERVER_NAME)]
        self.channel = grpc.secure_channel(address, credentials, options=options)
        self.stub = pb_grpc.AgentStub(self.channel)
        # The identity is the certificate; calls carry no token.
        self.metadata: tuple[tuple[str, str], ...] = ()

    def close(self) -> None:
        self.channel.close()


def locate(address: str, timeout: float) -> str:
    """Asks the controller's API port where its agent port listens now."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        reply = pb_grpc.AgentStub(channel).Locate(pb.LocateRequest(), timeout=timeout)
        return reply.agent_endpoint


def join(
    address: str, join_token: str, name: str, inventory: pb.Inventory, csr: bytes
) -> pb.JoinResponse:
    """Asks the controller's API port for a certificate (the join token is the credential)."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.AgentStub(channel)
        return stub.Join(
            pb.JoinRequest(name=name, inventory=inventory, csr=csr),
            metadata=(("authorization", f"Bearer {join_token}"),),
            timeout=30,
            wait_for_ready=True,
        )
