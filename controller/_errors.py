"""The controller's domain errors, and their one mapping onto gRPC status codes.

    WakaError
    ├── NotFound            (NOT_FOUND)            AppNotFound, ReleaseNotFound, BuildNotFound, ...
    ├── AlreadyExists       (ALREADY_EXISTS)       the app name is taken
    ├── InvalidInput        (INVALID_ARGUMENT)     bad names, scales, tarballs, checksums
    ├── Conflict            (FAILED_PRECONDITION)  the request makes no sense in the current state
    ├── Unauthenticated     (UNAUTHENTICATED)      no token, a bad one, the wrong kind
    └── Unavailable         (UNAVAILABLE)          no agent to build on, the controller is stopping

Each message is written for the person at the CLI: it names what was wrong.
"""

from __future__ import annotations

import grpc


class WakaError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class NotFound(WakaError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(WakaError):
    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidInput(WakaError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Conflict(WakaError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(WakaError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(WakaError):
    code = grpc.StatusCode.UNAVAILABLE


def app_not_found(name: str) -> NotFound:
    return NotFound(f"Couldn't find that app: {name!r}.")
