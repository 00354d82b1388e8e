"""``waka version`` and ``waka help [COMMAND]``."""

from __future__ import annotations

import argparse
import platform

from waka import __version__
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._parser import COMMANDS, LAUNCHERS, ParserExit, build_parser


def version_text() -> str:
    return (
        f"waka/{__version__} python/{platform.python_version()} "
        f"{platform.system().lower()}-{platform.machine()}"
    )


def version(args: argparse.Namespace, ctx: Context) -> int:
    del args
    ctx.stdout.write(version_text() + "\n")
    return 0


def help(args: argparse.Namespace, ctx: Context) -> int:
    parser = build_parser(ctx.stdout, ctx.stderr)
    if not args.topic:
        parser.print_help()
        return 0
    if args.topic in LAUNCHERS:
        summary = LAUNCHERS[args.topic]
        ctx.stdout.write(f'waka {args.topic}: {summary}; see "waka {args.topic} --help"\n')
        return 0
    known = {name for command in COMMANDS for name in (command.name, *command.aliases)}
    if args.topic not in known:
        raise CliError(f'"{args.topic}" is not a waka command; "waka help" lists them')
    try:
        parser.parse_args([args.topic, "--help"])
    except ParserExit as done:
        return done.status
    return 0
