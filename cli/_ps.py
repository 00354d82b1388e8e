"""``waka ps``, ``ps:scale``, ``ps:restart`` (also ``restart``), ``ps:stop``, ``ps:type`` and
``ps:wait``."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from typing import TextIO

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import action, app_label, write_json
from waka.cli._records import dyno_record, dyno_state
from waka.cli._scale import Change, parse_changes
from waka.cli._times import from_timestamp, heroku_time
from waka.v1 import platform_pb2

ONE_OFF_TYPE = "run"


def ps(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        dynos = sorted(api.dynos.List(platform_pb2.AppRef(app=app)).dynos, key=dyno_order)
    if args.json:
        write_json(ctx.stdout, [dyno_record(dyno) for dyno in dynos])
        return 0
    if not dynos:
        ctx.stdout.write(f"No dynos on {app_label(app)}\n")
        return 0
    write_dynos(ctx.stdout, dynos, ctx.clock())
    return 0


def dyno_order(dyno: platform_pb2.Dyno) -> tuple[str, int, str]:
    """By type, then by number: `web.2` before `web.10`."""
    number = re.fullmatch(r".*\.(\d+)", dyno.name)
    return (dyno.type, int(number[1]) if number else 0, dyno.name)


def write_dynos(out: TextIO, dynos: Iterable[platform_pb2.Dyno], now: datetime) -> None:
    """Heroku's ``ps`` layout: a heading per process type, then a line per dyno."""
    for index, (kind, group) in enumerate(groupby(dynos, key=lambda dyno: dyno.type)):
        members = list(group)
        if index:
            out.write("\n")
        if kind == ONE_OFF_TYPE:
            out.write(f"=== {kind}: one-off processes ({len(members)})\n")
        else:
            first = members[0]
            out.write(f"=== {kind} ({first.size}): `{first.command}` ({len(members)})\n")
        for dyno in members:
            out.write(dyno_line(dyno, now) + "\n")
            if dyno.message:
                out.write(f"  {dyno.message}\n")


def dyno_line(dyno: platform_pb2.Dyno, now: datetime) -> str:
    """``web.1: up 2026/11/26 03:01:28 +0000 (~ 5m ago)  v3  node-1  127.0.0.1:20001``."""
    since = heroku_time(from_timestamp(dyno.state_changed_at), now)
    name = f"{dyno.name} ({dyno.size})" if dyno.type == ONE_OFF_TYPE else dyno.name
    line = f"{name}: {dyno_state(dyno.state)} {since}"
    if dyno.type == ONE_OFF_TYPE:
        line += f": {dyno.command}"
    details = [f"v{dyno.release}" if dyno.release else "", dyno.node, dyno.address]
    return "  ".join([line, *(detail for detail in details if detail)])


def scale(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    changes = parse_changes(args.changes)
    with connect(args.data_dir, ctx.environ) as api:
        if not changes:
            # Like Heroku: without arguments, show the formation as scale arguments.
            entries = api.formation.List(platform_pb2.AppRef(app=app)).entries
            current = " ".join(f"{e.type}={e.quantity}:{e.size}" for e in _by_type(entries))
            ctx.stdout.write(f"{current}\n")
            return 0
        request = platform_pb2.ScaleRequest(app=app, changes=[_scale_change(c) for c in changes])
        with action(ctx.stdout, "Scaling dynos") as outcome:
            entries = api.formation.Scale(request).entries
            running = ", ".join(f"{e.type} at {e.quantity}:{e.size}" for e in _by_type(entries))
            outcome.detail = f"now running {running}" if running else "now running nothing"
    return 0


def _scale_change(change: Change) -> platform_pb2.ScaleChange:
    return platform_pb2.ScaleChange(
        type=change.type,
        quantity=change.quantity or 0,
        relative=change.relative,
        has_quantity=change.quantity is not None,
        size=change.size,
    )


def _by_type(
    entries: Iterable[platform_pb2.FormationEntry],
) -> list[platform_pb2.FormationEntry]:
    return sorted(entries, key=lambda entry: entry.type)


def restart(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    target: str = args.target
    if not target:
        what = "dynos"
    elif "." in target:
        what = f"{target} dyno"
    else:
        what = f"{target} dynos"
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Restarting {what} on {app_label(app)}"),
    ):
        api.dynos.Restart(platform_pb2.DynoTarget(app=app, target=target))
    return 0


def wait(args: argparse.Namespace, ctx: Context) -> int:
    """``ps:wait``: returns once every dyno is up on the current release (for deploy scripts)."""
    app = resolve_app(args.app, ctx)
    if args.wait_interval <= 0:
        raise CliError(
            f"--wait-interval must be a positive number of seconds, not {args.wait_interval}"
        )
    with connect(args.data_dir, ctx.environ) as api:
        release = api.apps.Get(platform_pb2.AppRef(app=app)).current_release
        if not release:
            raise CliError(f"{app} has no release yet: deploy it first")
        ctx.stdout.write(f"Waiting for every dyno to be running v{release}... ")
        ctx.stdout.flush()
        while True:
            dynos = [
                dyno
                for dyno in api.dynos.List(platform_pb2.AppRef(app=app)).dynos
                if (args.with_run or dyno.type != ONE_OFF_TYPE)
                and (not args.type or dyno.type == args.type)
            ]
            ready = [d for d in dynos if d.release == release and dyno_state(d.state) == "up"]
            if len(ready) == len(dynos):
                break
            time.sleep(args.wait_interval)
    ctx.stdout.write(f"{len(ready)} / {len(dynos)}, done\n")
    return 0


def stop(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Stopping {args.dyno} dyno on {app_label(app)}"),
    ):
        api.dynos.Stop(platform_pb2.DynoTarget(app=app, target=args.dyno))
    return 0


def resize(args: argparse.Namespace, ctx: Context) -> int:
    """``ps:resize web=standard-2x``: a size-only scale."""
    app = resolve_app(args.app, ctx)
    changes = parse_changes(args.changes)
    for change in changes:
        if change.quantity is not None or not change.size:
            raise CliError(f'invalid resize argument for "{change.type}": expected TYPE=SIZE')
    request = platform_pb2.ScaleRequest(app=app, changes=[_scale_change(c) for c in changes])
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, "Resizing dynos") as outcome,
    ):
        entries = api.formation.Scale(request).entries
        outcome.detail = "now running " + ", ".join(
            f"{e.type} at {e.quantity}:{e.size}" for e in _by_type(entries)
        )
    return 0
