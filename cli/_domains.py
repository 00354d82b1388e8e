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
    "private-network": "Dynos get a network namespace of the app's own on each host (own eth0"
    " address; the host's and other apps' loopback out of reach)",
}


def feature_states(record: platform_pb2.App) -> dict[str, bool]:
    return {"preboot": record.preboot, "private-network": record.private_network}


def feature_update(app: str, feature: str, on: bool) -> platform_pb2.AppUpdate:
    """The Apps.Update request that turns one feature on or off."""
    if feature == "preboot":
        return platform_pb2.AppUpdate(app=app, set_preboot=True, preboot=on)
    if feature == "private-network":
        return platform_pb2.AppUpdate(app=app, set_private_network=True, private_network=on)
    raise CliError(f'unknown feature "{feature}"; features: {", ".join(FEATURES)}')


def features(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        record = api.apps.Get(platform_pb2.AppRef(app=app))
    enabled = feature_states(record)
    if args.json:
        write_json(
            ctx.stdout,
            [{"name": n, "enabled": enabled[n], "description": d} for n, d in FEATURES.items()],
        )
        return 0
    heading(ctx.stdout, f"App Features {app_label(app)}")
    for name, description in FEATURES.items():
        ctx.stdout.write(f"[{'+' if enabled[name] else ' '}] {name:<15} {description}\n")
    return 0


def _feature(on: bool):
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        app = resolve_app(args.app, ctx)
        request = feature_update(app, args.feature, on)
        verb = "Enabling" if on else "Disabling"
        with connect(args.data_dir, ctx.environ) as api:
            before = feature_states(api.apps.Get(platform_pb2.AppRef(app=app)))[args.feature]
            with action(ctx.stdout, f"{verb} {args.feature} for {app_label(app)}"):
                api.apps.Update(request)
            running = api.dynos.List(platform_pb2.AppRef(app=app)).dynos
        if args.feature == "private-network" and before != on and running:
            # The controller replaced them (a dyno's network is fixed when it is made).
            where = "the app's own network" if on else "the host's network"
            ctx.stdout.write(f"Restarting dynos: new ones replace them, in {where}.\n")
        return 0

    return handler


enable_feature = _feature(True)
disable_feature = _feature(False)
