"""The errors a command raises for expected failures, and the boundary that prints them.

    CliError                a failure explained in one sentence; printed as ``error: ...``, exit 1
    ├── ApiError            the controller refused or could not be reached (mapped from gRPC
    │                       status codes in ``_rpc_errors``, the only place that knows them)
    UsageError              the command line itself is wrong; printed with the usage, exit 2

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable

from waka.cli._context import Context

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An expected failure, with a message written for the person at the terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """The controller answered with an error status, or could not be reached."""


class UsageError(Exception):
    """The command line does not parse; ``usage`` is the usage line of the command concerned."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


def run_guarded(command: Callable[[], int], ctx: Context) -> int:
    """Run ``command``, turning expected failures into a message on stderr and an exit status."""
    try:
        return command()
    except CliError as error:
        # Whatever was said on stdout comes first, so the message follows it on a terminal.
        ctx.stdout.flush()
        ctx.stderr.write(f"error: {error.message}\n")
        return EXIT_FAILURE
    except UsageError as error:
        ctx.stderr.write(error.usage)
        ctx.stderr.write(f"error: {error.message}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        # The user asked to stop; the shell has shown the ^C, there is nothing to add.
        return EXIT_INTERRUPTED
