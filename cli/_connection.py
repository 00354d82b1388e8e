"""A connection to the controller's user API: auth metadata, timeouts and error mapping.

Commands call ``api.apps.Get(request)`` as on a generated stub; every call carries the bearer
token, unary calls have a deadline, streams have none, and any gRPC failure comes out as an
``ApiError`` (see ``_rpc_errors``), also while iterating a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import grpc

from waka.cli._credentials import ApiTarget, api_target, data_dir
from waka.cli._rpc_errors import UNARY_TIMEOUT_SECONDS, mapped_rpc_errors
from waka.v1 import platform_pb2_grpc


class Service:
    """One service's stub, whose methods add metadata, deadlines and error mapping."""

    def __init__(self, stub: object, target: ApiTarget) -> None:
        self._stub = stub
        self._target = target
        self._metadata = (("authorization", f"Bearer {target.token}"),)

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, name)
        if isinstance(method, grpc.UnaryUnaryMultiCallable):
            return self._unary(method)
        if isinstance(method, grpc.UnaryStreamMultiCallable | grpc.StreamStreamMultiCallable):
            return self._streaming(method)
        raise AttributeError(f"{type(self._stub).__name__} has no streaming or unary method {name}")

    def _unary(self, method: grpc.UnaryUnaryMultiCallable) -> Callable[[Any], Any]:
        def call(request: Any) -> Any:
            with mapped_rpc_errors(self._target):
                return method(request, timeout=UNARY_TIMEOUT_SECONDS, metadata=self._metadata)

        return call

    def _streaming(
        self, method: grpc.UnaryStreamMultiCallable | grpc.StreamStreamMultiCallable
    ) -> Callable[[Any], Generator[Any, None, None]]:
        def call(request: Any) -> Generator[Any, None, None]:
            # No deadline: a tail or a build runs as long as it runs.
            with mapped_rpc_errors(self._target):
                responses = method(request, metadata=self._metadata)
            return _mapped_stream(responses, self._target)

        return call


def _mapped_stream(responses: Any, target: ApiTarget) -> Generator[Any, None, None]:
    try:
        with mapped_rpc_errors(target):
            yield from responses
    finally:
        # Ends the call on the server too when the reader stops early (Ctrl-C, an error).
        responses.cancel()


class Api:
    """The platform services of one controller."""

    def __init__(self, channel: grpc.Channel, target: ApiTarget) -> None:
        self.apps = Service(platform_pb2_grpc.AppsStub(channel), target)
        self.builds = Service(platform_pb2_grpc.BuildsStub(channel), target)
        self.releases = Service(platform_pb2_grpc.ReleasesStub(channel), target)
        self.formation = Service(platform_pb2_grpc.FormationStub(channel), target)
        self.dynos = Service(platform_pb2_grpc.DynosStub(channel), target)
        self.config = Service(platform_pb2_grpc.ConfigStub(channel), target)
        self.logs = Service(platform_pb2_grpc.LogsStub(channel), target)
        self.nodes = Service(platform_pb2_grpc.NodesStub(channel), target)
        self.domains = Service(platform_pb2_grpc.DomainsStub(channel), target)
        self.buildpacks = Service(platform_pb2_grpc.BuildpacksStub(channel), target)
        self.addons = Service(platform_pb2_grpc.AddonsStub(channel), target)


# While a call is open (a tail, a build's output), the CLI pings the controller every 10 s and
# gives up after 10 s without an answer: a controller whose host lost power or network never
# says goodbye, and `waka logs -t` would otherwise wait for it forever. (The controller accepts
# pings every 5 s; an idle channel does not ping.)
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # grpcio (1.85) ends a connection on an unanswered ping after this, not after the keepalive
    # timeout above (its default is a minute).
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),  # a quiet tail carries no data for hours
)


@contextmanager
def connected(target: ApiTarget) -> Iterator[Api]:
    channel = grpc.insecure_channel(target.address, options=KEEPALIVE_OPTIONS)
    try:
        yield Api(channel, target)
    finally:
        channel.close()


def connect(data_dir_option: str | None, environ: Mapping[str, str]) -> AbstractContextManager[Api]:
    """Connect to the controller named by the data dir and environment (see ``_credentials``)."""
    directory = data_dir(data_dir_option, environ)
    return connected(api_target(directory, environ))
