"""The servicer boundary: who is calling, and domain errors turned into gRPC statuses.

Every RPC method is wrapped by `unary` or `streaming` with the kind of credential it accepts. User
tokens open only the user API and node credentials only the agent API, so neither can stand in for
the other.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from waka.controller._errors import Unauthenticated, WakaError
from waka.controller._tokens import Identity, Kind, TokenBook

log = logging.getLogger("waka.controller")

F = TypeVar("F", bound=Callable[..., Any])


def _peer_node(context: grpc.ServicerContext) -> str:
    """The node id in the client certificate of a mutual-TLS call, or empty."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return ""
    names = auth.get("x509_common_name") or []
    return names[0].decode() if names else ""


def identify(context: grpc.ServicerContext, tokens: TokenBook, kind: Kind) -> Identity:
    if kind == "anyone":
        return Identity("anyone", "")
    if kind == "node":
        node_id = _peer_node(context)
        if not node_id:
            raise Unauthenticated(
                "Agent calls need the node's certificate (mutual TLS on the agent port)."
            )
        identity = tokens.identify_node(node_id)
        if identity is None:
            raise Unauthenticated("This node's certificate was revoked (the node was removed).")
        return identity
    token = ""
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            token = value.removeprefix("Bearer ").strip()
    if not token:
        raise Unauthenticated("No API token: send `authorization: Bearer <token>`.")
    identity = tokens.identify(token)
    if identity is None:
        raise Unauthenticated("Invalid, expired or revoked token.")
    if identity.kind != kind:
        wanted = {"user": "a user token", "join": "a join token"}
        raise Unauthenticated(f"This call needs {wanted[kind]}; that token is another kind.")
    return identity


def _abort(context: grpc.ServicerContext, error: WakaError) -> None:
    context.abort(error.code, str(error))


def _abort_internal(context: grpc.ServicerContext, method: str) -> None:
    log.exception("internal error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"Internal error in {method}; see the controller log.")


def unary(kind: Kind) -> Callable[[F], F]:
    """For unary and client-streaming methods: (self, request, context, identity) -> reply."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                identity = identify(context, self.tokens, kind)
                return method(self, request, context, identity)
            except WakaError as error:
                _abort(context, error)
            except Exception:
                if context.code() is not None:  # already aborted on purpose
                    raise
                _abort_internal(context, method.__name__)
            return None

        return wrapper  # type: ignore[return-value]

    return decorate


def streaming(kind: Kind) -> Callable[[F], F]:
    """For server-streaming and bidi methods: (self, request, context, identity) -> iterator."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                identity = identify(context, self.tokens, kind)
                yield from method(self, request, context, identity)
            except WakaError as error:
                _abort(context, error)
            except Exception:
                if context.code() is not None or not context.is_active():
                    return
                _abort_internal(context, method.__name__)

        return wrapper  # type: ignore[return-value]

    return decorate
