"""``waka drains``: where an app's log stream is forwarded (syslog and HTTPS drains)."""

from __future__ import annotations

import argparse

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._output import action, app_label, heading, table, write_json
from waka.v1 import platform_pb2


def list_drains(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        drains = api.logs.ListDrains(platform_pb2.AppRef(app=app)).drains
    if args.json:
        write_json(
            ctx.stdout,
            [
                {
                    "id": d.id,
                    "url": d.url,
                    "token": d.token,
                    "buffered": d.buffered,
                    "delivered": d.delivered,
                    "dropped": d.dropped,
                    "last_error": d.last_error,
                }
                for d in drains
            ],
        )
        return 0
    if not drains:
        ctx.stdout.write(f"{app_label(app)} has no drains\n")
        return 0
    heading(ctx.stdout, "Drains")
    table(
        ctx.stdout,
        [[d.url, f"({d.token})", d.last_error and f"last error: {d.last_error}"] for d in drains],
    )
    return 0


def add(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Adding drain to {app_label(app)}"),
    ):
        drain = api.logs.AddDrain(platform_pb2.DrainRequest(app=app, url=args.url))
    ctx.stdout.write(f"Successfully added drain {drain.url} ({drain.token})\n")
    return 0


def remove(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Removing drain {args.url} from {app_label(app)}"),
    ):
        api.logs.RemoveDrain(platform_pb2.DrainRequest(app=app, url=args.url))
    return 0
