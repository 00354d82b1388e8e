"""``waka domains`` and ``waka maintenance``: how users reach an app through the router."""

from __future__ import annotations

import argparse

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import action, app_label, heading, table, write_json
from waka.v1 import platform_pb2


def list_domains(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        domains = api.domains.List(platform_pb2.AppRef(app=app)).domains
    if args.json:
        write_json(
            ctx.stdout,
            [{"hostname": d.hostname, "kind": d.kind, "app": d.app} for d in domains],
        )
        return 0
    heading(ctx.stdout, f"{app} Heroku-style domain")
    for domain in domains:
        if domain.kind == "default":
            ctx.stdout.write(f"{domain.hostname}\n")
    custom = [d for d in domains if d.kind == "custom"]
    if custom:
        ctx.stdout.write("\n")
        heading(ctx.stdout, f"{app} Custom Domains")
        table(ctx.stdout, [["Domain Name"], *([d.hostname] for d in custom)])
    return 0


def add(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Adding {args.hostname} to {app_label(app)}"),
    ):
        api.domains.Add(platform_pb2.DomainRef(app=app, hostname=args.hostname))
    return 0


def remove(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Removing {args.hostname} from {app_label(app)}"),
    ):
        api.domains.Remove(platform_pb2.DomainRef(app=app, hostname=args.hostname))
    return 0


def maintenance(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        record = api.apps.Get(platform_pb2.AppRef(app=app))
    ctx.stdout.write("on\n" if record.maintenance else "off\n")
    return 0


def _switch(on: bool):
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        app = resolve_app(args.app, ctx)
        verb = "Enabling" if on else "Disabling"
        with (
            connect(args.data_dir, ctx.environ) as api,
            action(ctx.stdout, f"{verb} maintenance mode for {app_label(app)}"),
        ):
            api.apps.Update(platform_pb2.AppUpdate(app=app, set_maintenance=True, maintenance=on))
        return 0

    return handler


maintenance_on = _switch(True)
maintenance_off = _switch(False)


FEATURES = {
    "preboot": "Zero-downtime deploys: new dynos are up before old ones stop (on by default)",
}


def features(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        record = api.apps.Get(platform_pb2.AppRef(app=app))
    enabled = {"preboot": record.preboot}
    if args.json:
        write_json(
            ctx.stdout,
            [{"name": n, "enabled": enabled[n], "description": d} for n, d in FEATURES.items()],
        )
        return 0
    heading(ctx.stdout, f"App Features {app_label(app)}")
    for name, description in FEATURES.items():
        ctx.stdout.write(f"[{'+' if enabled[name] else ' '}] {name:<10} {description}\n")
    return 0


def _feature(on: bool):
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        app = resolve_app(args.app, ctx)
        if args.feature not in FEATURES:
            raise CliError(f'unknown feature "{args.feature}"; features: {", ".join(FEATURES)}')
        verb = "Enabling" if on else "Disabling"
        with (
            connect(args.data_dir, ctx.environ) as api,
            action(ctx.stdout, f"{verb} {args.feature} for {app_label(app)}"),
        ):
            api.apps.Update(platform_pb2.AppUpdate(app=app, set_preboot=True, preboot=on))
        return 0

    return handler


enable_feature = _feature(True)
disable_feature = _feature(False)
