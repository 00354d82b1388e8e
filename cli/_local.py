"""``waka local`` and ``local:run``: the app's Procfile on this machine, as ``heroku local``.

Processes run here, not in dynos: no build, no sandbox, the developer's own toolchains, with
the variables of ``.env`` (the format ``config:push`` reads) and ``PORT`` set per process (5000
for the first type, 5100 for the next...). honcho runs them and interleaves their output by
name; when one exits the others are stopped, and waka exits with the first one's status. The
``release`` type is left out unless asked for, as Heroku does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from waka.cli._context import Context
from waka.cli._dotenv import parse_dotenv
from waka.cli._errors import CliError
from waka.cli._run import command_text

RELEASE_TYPE = "release"


def local(args: argparse.Namespace, ctx: Context) -> int:
    procfile = ctx.cwd / args.procfile
    types = read_procfile(procfile)
    wanted, counts = parse_selection(args.processes, types, procfile)
    env = {**ctx.environ, **read_env(ctx.cwd / args.env)}
    if args.port is not None:
        env["PORT"] = str(args.port)
    manager = Manager(Printer(ctx.stdout, colour=True, prefix=True))
    for process in expand_processes(
        {name: types[name] for name in wanted}, concurrency=counts, env=env, port=5000
    ):
        manager.add_process(process.name, process.cmd, env=process.env, cwd=str(ctx.cwd))
    manager.loop()
    return manager.returncode or 0


def local_run(args: argparse.Namespace, ctx: Context) -> int:
    """``local:run CMD``: one command with the app's ``.env``, in this terminal."""
    command = command_text(args.command)
    env = {**ctx.environ, **read_env(ctx.cwd / args.env)}
    try:
        # A command line, as `waka run` takes it: bash reads it, as in a dyno.
        return subprocess.run(["bash", "-c", command], cwd=ctx.cwd, env=env, check=False).returncode
    except OSError as error:
        raise CliError(f"cannot run bash: {error}") from None


def read_procfile(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(
            f"no Procfile at {path}: give one with -f, or run waka local in the app"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    types = dict(parse_procfile(text).processes)
    if not types:
        raise CliError(f"{path} names no processes (lines like `web: python app.py`)")
    return types


def parse_selection(
    words: list[str], types: Mapping[str, str], procfile: Path
) -> tuple[list[str], dict[str, int]]:
    """`web worker`, or Heroku's `web=1,worker=2`: which types run, and how many of each."""
    if not words:
        return [name for name in types if name != RELEASE_TYPE], {}
    wanted: list[str] = []
    counts: dict[str, int] = {}
    for part in (piece for word in words for piece in word.split(",") if piece):
        name, sep, count = part.partition("=")
        if name not in types:
            raise CliError(f"{procfile} has no process type {name!r} (it has {', '.join(types)})")
        if sep:
            if not count.isdigit() or int(count) < 1:
                raise CliError(f"invalid count in {part!r}: expected TYPE=N with N at least 1")
            counts[name] = int(count)
        if name not in wanted:
            wanted.append(name)
    return wanted, counts


def read_env(path: Path) -> dict[str, str]:
    """The app's .env; none is fine (Heroku's local runs without one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    return parse_dotenv(text, os.fspath(path))
