"""``waka config``, ``config:get``, ``config:set``, ``config:unset``, ``config:push``,
``config:pull``, ``config:edit``."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._dotenv import DotenvError, format_dotenv, parse_dotenv
from waka.cli._errors import CliError
from waka.cli._output import action, aligned, app_label, heading, write_json
from waka.v1 import platform_pb2


def show(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        config = dict(sorted(api.config.Get(platform_pb2.AppRef(app=app)).vars.items()))
    if args.json:
        write_json(ctx.stdout, config)
    elif args.shell:
        for key, value in config.items():
            ctx.stdout.write(f"{key}={shlex.quote(value)}\n")
    elif not config:
        ctx.stdout.write(f"{app_label(app)} has no config vars\n")
    else:
        heading(ctx.stdout, f"{app} Config Vars")
        aligned(ctx.stdout, config.items())
    return 0


def get(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        config = api.config.Get(platform_pb2.AppRef(app=app)).vars
    # As Heroku: a var that is not set prints an empty line.
    ctx.stdout.write(f"{config.get(args.key, '')}\n")
    return 0


def set_vars(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    assignments = parse_assignments(args.assignments)
    names = ", ".join(assignments)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Setting {names} and restarting {app_label(app)}") as outcome,
    ):
        change = api.config.Update(platform_pb2.ConfigUpdate(app=app, set=assignments))
        outcome.detail = f"v{change.release}" if change.release else ""
    aligned(ctx.stdout, assignments.items())
    return 0


def unset(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    keys = list(dict.fromkeys(args.keys))
    names = ", ".join(keys)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Unsetting {names} and restarting {app_label(app)}") as outcome,
    ):
        change = api.config.Update(platform_pb2.ConfigUpdate(app=app, unset=keys))
        outcome.detail = f"v{change.release}" if change.release else ""
    return 0


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=value`` -> (KEY, value); the value may hold ``=`` and may be empty."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise CliError(f'invalid config var "{text}": expected KEY=value')
    return key, value


def parse_assignments(texts: list[str]) -> dict[str, str]:
    """Every ``KEY=value``, in order; a key given twice keeps its last value."""
    return dict(parse_assignment(text) for text in texts)


def push(args: argparse.Namespace, ctx: Context) -> int:
    """``config:push [FILE]``: set every variable of a .env file."""
    app = resolve_app(args.app, ctx)
    path = ctx.cwd / args.file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{args.file} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {args.file}: {error}") from None
    variables = parse_dotenv(text, args.file)
    if not variables:
        raise CliError(f"{args.file} has no config vars")
    names = ", ".join(variables)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Setting {names} and restarting {app_label(app)}") as outcome,
    ):
        change = api.config.Update(platform_pb2.ConfigUpdate(app=app, set=variables))
        outcome.detail = f"v{change.release}" if change.release else ""
    return 0


def pull(args: argparse.Namespace, ctx: Context) -> int:
    """``config:pull [FILE]``: write the app's config vars to a .env file.

    As with Heroku's config plugin, values already in the file are kept unless --overwrite.
    """
    app = resolve_app(args.app, ctx)
    path = ctx.cwd / args.file
    existing: dict[str, str] = {}
    if path.exists():
        existing = parse_dotenv(path.read_text(encoding="utf-8"), args.file)
    with connect(args.data_dir, ctx.environ) as api:
        remote = dict(api.config.Get(platform_pb2.AppRef(app=app)).vars)
    merged = {**remote, **existing} if not args.overwrite else {**existing, **remote}
    path.write_text(format_dotenv(merged), encoding="utf-8")
    ctx.stdout.write(f"Config for {app_label(app)} written to {args.file}\n")
    return 0


def edit(args: argparse.Namespace, ctx: Context) -> int:
    """``config:edit``: the config vars in $VISUAL/$EDITOR as a .env file; what changed is
    shown and, once confirmed, applied as one release."""
    app = resolve_app(args.app, ctx)
    editor = shlex.split(ctx.environ.get("VISUAL") or ctx.environ.get("EDITOR") or "vi")
    with connect(args.data_dir, ctx.environ) as api:
        before = dict(sorted(api.config.Get(platform_pb2.AppRef(app=app)).vars.items()))
        after = _edited(before, editor, app)
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        removed = [k for k in before if k not in after]
        if not changed and not removed:
            ctx.stdout.write("No changes to config vars\n")
            return 0
        for key, value in changed.items():
            sign = "~" if key in before else "+"
            ctx.stdout.write(f"{sign} {key}={shlex.quote(value)}\n")
        for key in removed:
            ctx.stdout.write(f"- {key}\n")
        if not args.yes:
            ctx.stdout.write(f"Update config vars on {app_label(app)}? [y/N] ")
            ctx.stdout.flush()
            if ctx.stdin.readline().strip().lower() not in {"y", "yes"}:
                raise CliError("config vars not changed")
        with action(ctx.stdout, f"Updating config vars and restarting {app_label(app)}") as outcome:
            update = platform_pb2.ConfigUpdate(app=app, set=changed, unset=removed)
            change = api.config.Update(update)
            outcome.detail = f"v{change.release}" if change.release else ""
    return 0


def _edited(config: dict[str, str], editor: list[str], app: str) -> dict[str, str]:
    # Private to this user: config vars are secrets.
    handle, name = tempfile.mkstemp(prefix=f"waka-{app}-", suffix=".env")
    path = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(format_dotenv(config))
        try:
            status = subprocess.run([*editor, name], check=False).returncode
        except OSError as error:
            raise CliError(f"cannot start the editor {shlex.join(editor)}: {error}") from None
        if status != 0:
            raise CliError(f"the editor {shlex.join(editor)} exited {status}: nothing changed")
        text = path.read_text(encoding="utf-8")
        try:
            edited = parse_dotenv(text, "the edited config")
        except DotenvError as error:
            keep = path.with_name(path.name + ".kept")
            keep.write_text(text, encoding="utf-8")
            raise CliError(f"{error.message}; nothing changed, your edit is in {keep}") from None
        return edited
    finally:
        path.unlink(missing_ok=True)
