"""The one place where gRPC status codes become sentences for the person at the terminal.

The controller writes its status details for users, so they are printed as they are; only the
failures the user must fix on their side (no controller, wrong token) get fixed wording here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from waka.cli._credentials import TOKEN_FILE, ApiTarget
from waka.cli._errors import ApiError

UNARY_TIMEOUT_SECONDS = 30.0


@contextmanager
def mapped_rpc_errors(target: ApiTarget) -> Iterator[None]:
    """Re-raise any ``grpc.RpcError`` from the block as an ``ApiError`` with a clear message."""
    try:
        yield
    except grpc.RpcError as error:
        code = _status_code(error)
        details = _details(error)
        raise ApiError(describe_status(code, details, target)) from None


def describe_status(code: grpc.StatusCode, details: str, target: ApiTarget) -> str:
    address = target.address
    if code is grpc.StatusCode.UNAVAILABLE:
        return f'cannot reach the waka controller at {address} (is "waka up" running?)'
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return f"authentication failed: check WAKA_API_KEY or {target.data_dir / TOKEN_FILE}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"the waka controller at {address} did not answer within "
            f"{UNARY_TIMEOUT_SECONDS:.0f} seconds"
        )
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"the waka controller at {address} does not support this command "
            f"(is it an older version?){_suffix(details)}"
        )
    if details:
        return details
    return f"the waka controller at {address} failed with status {code.name}"


def _status_code(error: grpc.RpcError) -> grpc.StatusCode:
    # Every RpcError grpcio raises from a call is also a grpc.Call; a bare RpcError has no code.
    code = getattr(error, "code", None)
    status = code() if callable(code) else None
    return status if isinstance(status, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return text.strip() if isinstance(text, str) else ""


def _suffix(details: str) -> str:
    return f": {details}" if details else ""
