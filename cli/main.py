"""The ``waka`` command: parse the command line, run one command, map failures to exit codes.

Imports stay light here: a command's module (and grpc with it) loads only when it runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from waka.cli._context import Context
from waka.cli._errors import run_guarded
from waka.cli._parser import LAUNCHERS, ParserExit, build_parser, load_handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``waka`` console script."""
    ctx = Context.from_process()
    try:
        status = run(list(sys.argv[1:] if argv is None else argv), ctx)
        ctx.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`waka logs | head`); stop quietly, and keep Python's final
        # flush of stdout from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return status


def run(argv: list[str], ctx: Context) -> int:
    launcher = launcher_call(argv)
    if launcher is not None:
        name, launcher_argv = launcher
        module = importlib.import_module("waka.cli.launcher")
        status: int = getattr(module, name)(launcher_argv)
        return status
    return run_guarded(lambda: _run_command(argv, ctx), ctx)


def _run_command(argv: list[str], ctx: Context) -> int:
    parser = build_parser(ctx.stdout, ctx.stderr)
    try:
        args = parser.parse_command_line(argv)
    except ParserExit as done:
        return done.status
    if args.show_version:
        args.handler = "_meta:version"
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    return load_handler(args.handler)(args, ctx)


def launcher_call(argv: list[str]) -> tuple[str, list[str]] | None:
    """``waka [--data-dir DIR] up ARGS`` -> ``("up", [--data-dir DIR] ARGS)``, else None.

    The daemons parse their own arguments; a data dir given before the command is passed on
    in front of them.
    """
    global_options: list[str] = []
    rest = argv
    while rest and rest[0].startswith("--data-dir"):
        takes_value = rest[0] == "--data-dir"
        taken = 2 if takes_value else 1
        global_options.extend(rest[:taken])
        rest = rest[taken:]
    if rest and rest[0] in LAUNCHERS:
        return rest[0], global_options + rest[1:]
    return None


if __name__ == "__main__":
    sys.exit(main())
