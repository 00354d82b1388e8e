"""``waka addons`` and its verbs, ``pg:psql``, ``redis:cli`` and ``pg:backups``.

Add-on credentials never pass through here: the controller puts them in the attached apps'
config vars, and ``pg:psql`` / ``redis:cli`` use them from inside a one-off dyno of the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from waka.cli._appref import resolve_app
from waka.cli._connection import Api, connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import action, aligned, app_label, heading, human_bytes, table, write_json
from waka.cli._run import run as run_dyno
from waka.cli._times import from_timestamp, heroku_time, iso_utc
from waka.v1 import platform_pb2


def _addon_json(addon: platform_pb2.Addon) -> dict[str, Any]:
    return {
        "name": addon.name,
        "id": addon.id,
        "service": addon.service,
        "plan": addon.plan,
        "state": addon.state,
        "message": addon.message,
        "mode": addon.mode,
        "node": addon.node,
        "server": addon.server,
        "port": addon.port,
        "app": addon.app,
        "created_at": iso_utc(from_timestamp(addon.created_at)),
        "attachments": [
            {"app": a.app, "name": a.name, "config_var": a.config_var} for a in addon.attachments
        ],
    }


def _change_json(change: platform_pb2.AddonChange) -> dict[str, Any]:
    return {
        "addon": _addon_json(change.addon),
        "releases": [
            {"app": r.app, "config_var": r.config_var, "version": r.version, "action": r.action}
            for r in change.releases
        ],
        "message": change.message,
    }


def _where(addon: platform_pb2.Addon) -> str:
    return addon.node if addon.mode == "managed" else f"{addon.server} (external)"


def _state(addon: platform_pb2.Addon) -> str:
    return f"{addon.state}: {addon.message}" if addon.message else addon.state


def list_addons(args: argparse.Namespace, ctx: Context) -> int:
    app = args.app or ""
    with connect(args.data_dir, ctx.environ) as api:
        addons = api.addons.List(platform_pb2.AddonListRequest(app=app)).addons
    if args.json:
        write_json(ctx.stdout, [_addon_json(a) for a in addons])
        return 0
    if not addons:
        where = f" for {app_label(app)}" if app else ""
        ctx.stdout.write(f"No add-ons{where}.\n")
        return 0
    rows = [["Add-on", "Service", "Plan", "State", "Node", "Attachments"]]
    for addon in addons:
        attachments = ", ".join(f"{a.app}::{a.name}" for a in addon.attachments) or "(none)"
        rows.append(
            [addon.name, addon.service, addon.plan, addon.state, _where(addon), attachments]
        )
    table(ctx.stdout, rows)
    for addon in addons:
        if addon.message:
            ctx.stdout.write(f"\n{addon.name} is {addon.state}: {addon.message}.\n")
    return 0


def info(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        addon = api.addons.Get(platform_pb2.AddonRef(name=args.name, app=args.app or ""))
    if args.json:
        write_json(ctx.stdout, _addon_json(addon))
        return 0
    heading(ctx.stdout, addon.name)
    aligned(
        ctx.stdout,
        [
            ("Service", addon.service),
            ("Plan", addon.plan),
            ("State", _state(addon)),
            ("Mode", addon.mode),
            ("Node" if addon.mode == "managed" else "Server", _where(addon)),
            ("Port", str(addon.port) if addon.port else ""),
            ("App", addon.app or "(none)"),
            (
                "Attachments",
                ", ".join(f"{a.app}::{a.name}" for a in addon.attachments) or "(none)",
            ),
            ("Created", heroku_time(from_timestamp(addon.created_at), ctx.clock())),
        ],
    )
    return 0


def _releases_text(change: platform_pb2.AddonChange) -> str:
    return ", ".join(f"v{r.version}" for r in change.releases if r.version)


def create(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    request = platform_pb2.CreateAddonRequest(
        app=app, service=args.service, plan=args.plan, as_name=args.as_name, node=args.node
    )
    with connect(args.data_dir, ctx.environ) as api:
        if args.json:
            write_json(ctx.stdout, _change_json(api.addons.Create(request)))
            return 0
        with action(ctx.stdout, f"Creating {args.service} on {app_label(app)}") as outcome:
            change = api.addons.Create(request)
            outcome.detail = _releases_text(change)
    addon = change.addon
    ctx.stdout.write(f"Created {addon.name} ({addon.service}:{addon.plan}) on {_where(addon)}\n")
    for release in change.releases:
        ctx.stdout.write(f"Attached as {release.config_var} to {release.app}\n")
    if change.message:
        ctx.stdout.write(f"{change.message}\n")
    return 0


def _change_attachment(
    args: argparse.Namespace,
    ctx: Context,
    call: Callable[[Api], platform_pb2.AddonChange],
    doing: str,
    release_line: Callable[[platform_pb2.AttachmentRelease], str],
) -> int:
    """Run an attach or detach ``call`` and report it: the whole change with --json, else
    ``doing`` with the new release numbers and then one ``release_line`` per changed app."""
    with connect(args.data_dir, ctx.environ) as api:
        if args.json:
            write_json(ctx.stdout, _change_json(call(api)))
            return 0
        with action(ctx.stdout, doing) as outcome:
            change = call(api)
            outcome.detail = _releases_text(change)
    for release in change.releases:
        ctx.stdout.write(release_line(release))
    return 0


def attach(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    request = platform_pb2.AttachAddonRequest(name=args.name, app=app, as_name=args.as_name)
    return _change_attachment(
        args,
        ctx,
        lambda api: api.addons.Attach(request),
        f"Attaching {args.name} to {app_label(app)}",
        lambda release: f"Attached as {release.config_var}\n",
    )


def detach(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    request = platform_pb2.AddonRef(name=args.name, app=app)
    return _change_attachment(
        args,
        ctx,
        lambda api: api.addons.Detach(request),
        f"Detaching {args.name} from {app_label(app)}",
        lambda release: f"Unset {release.config_var}\n",
    )


def destroy(args: argparse.Namespace, ctx: Context) -> int:
    # Without --confirm the controller refuses, naming the app to confirm with.
    request = platform_pb2.DestroyAddonRequest(name=args.name, confirm=args.confirm or "")
    with connect(args.data_dir, ctx.environ) as api:
        if args.json:
            write_json(ctx.stdout, _change_json(api.addons.Destroy(request)))
            return 0
        with action(ctx.stdout, f"Destroying {args.name}") as outcome:
            change = api.addons.Destroy(request)
            outcome.detail = ", ".join(
                f"{r.app} v{r.version}" for r in change.releases if r.version
            )
    return 0


def services(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        found = api.addons.Services(platform_pb2.Empty()).services
    if args.json:
        write_json(
            ctx.stdout,
            [
                {
                    "name": s.name,
                    "attachment": s.attachment,
                    "external": s.external,
                    "backups": s.backups,
                    "plans": [
                        {"name": p.name, "summary": p.summary, "default": p.default}
                        for p in s.plans
                    ],
                }
                for s in found
            ],
        )
        return 0
    for index, service in enumerate(found):
        if index:
            ctx.stdout.write("\n")
        heading(ctx.stdout, f"{service.name} (attached as {service.attachment}_URL)")
        table(
            ctx.stdout,
            [
                [f"{service.name}:{p.name}", p.summary + (" (default)" if p.default else "")]
                for p in service.plans
            ],
        )
    return 0


# ---------------------------------------------------------------- external servers


def servers(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        found = api.addons.ListServers(platform_pb2.Empty()).servers
    if args.json:
        write_json(
            ctx.stdout,
            [
                {"name": s.name, "service": s.service, "address": s.address, "addons": s.addons}
                for s in found
            ],
        )
        return 0
    if not found:
        ctx.stdout.write("No external add-on servers.\n")
        return 0
    rows = [["Name", "Service", "Address", "Add-ons"]]
    rows += [[s.name, s.service, s.address, str(s.addons)] for s in found]
    table(ctx.stdout, rows)
    return 0


def servers_add(args: argparse.Namespace, ctx: Context) -> int:
    request = platform_pb2.AddAddonServerRequest(service=args.service, url=args.url, name=args.name)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Registering an external {args.service} server") as outcome,
    ):
        server = api.addons.AddServer(request)
        outcome.detail = f"{server.name} ({server.address})"
    return 0


def servers_remove(args: argparse.Namespace, ctx: Context) -> int:
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Removing the add-on server {args.name}"),
    ):
        api.addons.RemoveServer(platform_pb2.AddonServerRef(name=args.name))
    return 0


# ---------------------------------------------------------------- consoles


def _config_var(api: Api, app: str, ref: str, service: str) -> str:
    """The config var of the app's attachment `ref` (an attachment or add-on name), else of
    the app's one attachment of `service`."""
    return _attachment(api, app, ref, service)[1]


def _attachment(api: Api, app: str, ref: str, service: str) -> tuple[platform_pb2.Addon, str]:
    """The add-on and config var of the app's attachment `ref`, else of its one `service`."""
    addons = api.addons.List(platform_pb2.AddonListRequest(app=app)).addons
    wanted = ref.strip().upper().removesuffix("_URL")
    candidates: list[tuple[platform_pb2.Addon, str]] = []
    for addon in addons:
        for attachment in addon.attachments:
            if attachment.app != app:
                continue
            if ref and (attachment.name == wanted or addon.name == ref.strip()):
                return addon, attachment.config_var
            if not ref and addon.service == service:
                candidates.append((addon, attachment.config_var))
    if ref:
        raise CliError(
            f"{app} has no {service} add-on attached as {ref}; see `waka addons -a {app}`"
        )
    if not candidates:
        raise CliError(
            f"{app} has no {service} add-on; create one with `waka addons:create {service}`"
        )
    default = f"{_DEFAULT_ATTACHMENT[service]}_URL"
    for candidate in candidates if len(candidates) > 1 else ():
        if candidate[1] == default:
            return candidate
    if len(candidates) > 1:
        names = ", ".join(var for _, var in candidates)
        raise CliError(f"{app} has several {service} add-ons: name one ({names})")
    return candidates[0]


_DEFAULT_ATTACHMENT = {"postgresql": "DATABASE", "redis": "REDIS"}


def _console(
    args: argparse.Namespace, ctx: Context, service: str, command: Callable[[str], str]
) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        var = _config_var(api, app, args.database or "", service)
    # In a one-off dyno of the app, where the credentials already are (its config vars).
    run_args = argparse.Namespace(
        app=app, data_dir=args.data_dir, size="", env="", no_tty=args.no_tty, command=[command(var)]
    )
    return run_dyno(run_args, ctx)


def psql(args: argparse.Namespace, ctx: Context) -> int:
    extra = f" --command={shlex.quote(args.command)}" if args.command else ""
    return _console(args, ctx, "postgresql", lambda var: f'psql "${var}"{extra}')


# One line, `|`-separated: the figures `pg:info` shows, as the database itself reports them.
PG_INFO_QUERY = (
    "SELECT current_setting('server_version'), pg_database_size(current_database()),"
    " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
    " current_setting('max_connections'),"
    " (SELECT count(*) FROM information_schema.tables"
    " WHERE table_schema NOT IN ('pg_catalog', 'information_schema'))"
)


def pg_info(args: argparse.Namespace, ctx: Context) -> int:
    """``pg:info [DATABASE]``: the database's plan and what it says of itself (asked from a
    one-off dyno of the app, where its credentials are)."""
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        addon, var = _attachment(api, app, args.database or "", "postgresql")
    out, err = io.StringIO(), io.StringIO()
    query = f'psql "${var}" --no-psqlrc -At -F "|" -c {shlex.quote(PG_INFO_QUERY)}'
    run_args = argparse.Namespace(
        app=app, data_dir=args.data_dir, size="", env="", no_tty=True, command=[query]
    )
    quiet = dataclasses.replace(ctx, stdout=out, stderr=err, stdin=io.StringIO())
    if run_dyno(run_args, quiet) != 0:
        said = err.getvalue().strip().splitlines()
        raise CliError(
            f"cannot ask {addon.name} about itself: {said[-1] if said else 'psql failed'}"
        )
    fields = out.getvalue().strip().splitlines()[-1].split("|")
    version, size, connections, max_connections, tables = fields
    heading(ctx.stdout, var)
    aligned(
        ctx.stdout,
        [
            ("Plan", addon.plan),
            ("Status", _state(addon)),
            ("Connections", f"{connections}/{max_connections}"),
            ("PG Version", version),
            ("Data Size", human_bytes(int(size))),
            ("Tables", tables),
            ("Created", heroku_time(from_timestamp(addon.created_at), ctx.clock())),
            ("Add-on", addon.name),
        ],
    )
    return 0


def redis_cli(args: argparse.Namespace, ctx: Context) -> int:
    return _console(args, ctx, "redis", lambda var: f'redis-cli --no-auth-warning -u "${var}"')


# ---------------------------------------------------------------- backups


def _backup_json(backup: platform_pb2.Backup) -> dict[str, Any]:
    return {
        "id": backup.id,
        "addon": backup.addon,
        "app": backup.app,
        "status": backup.status,
        "size": backup.size,
        "created_at": iso_utc(from_timestamp(backup.created_at)),
        "finished_at": iso_utc(from_timestamp(backup.finished_at)),
        "error": backup.error,
    }


def backups(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        found = api.addons.ListBackups(platform_pb2.AddonRef(app=app)).backups
    if args.json:
        write_json(ctx.stdout, [_backup_json(b) for b in found])
        return 0
    if not found:
        ctx.stdout.write(
            f"No backups for {app_label(app)}. Capture one with `waka pg:backups:capture`.\n"
        )
        return 0
    heading(ctx.stdout, f"{app} Backups")
    rows = [["ID", "Created", "Status", "Size", "Database"]]
    now = ctx.clock()
    for backup in found:
        status = backup.status if not backup.error else f"{backup.status}: {backup.error}"
        rows.append(
            [
                backup.id,
                heroku_time(from_timestamp(backup.created_at), now),
                status,
                human_bytes(backup.size),
                backup.addon,
            ]
        )
    table(ctx.stdout, rows)
    return 0


def _follow(events: Iterator[platform_pb2.BackupEvent], ctx: Context) -> platform_pb2.Backup:
    for event in events:
        if event.WhichOneof("event") == "output":
            ctx.stderr.write(f"{event.output}\n")
            ctx.stderr.flush()
        elif event.WhichOneof("event") == "finished":
            return event.finished
    raise CliError("the connection to the controller ended before the backup finished")


def backups_capture(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        backup = _follow(
            api.addons.CaptureBackup(platform_pb2.AddonRef(name=args.database or "", app=app)), ctx
        )
    if args.json:
        write_json(ctx.stdout, _backup_json(backup))
    else:
        ctx.stdout.write(
            f"Backup {backup.id} of {backup.addon}: {backup.status}, {human_bytes(backup.size)}\n"
        )
    return 0


def backups_restore(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    if args.confirm != app:
        raise CliError(
            f"Restoring {args.backup_id} replaces the data of {app}'s database: re-run with"
            f" --confirm {app}."
        )
    request = platform_pb2.RestoreBackupRequest(
        id=args.backup_id, name=args.database or "", app=app, confirm=args.confirm
    )
    with connect(args.data_dir, ctx.environ) as api:
        backup = _follow(api.addons.RestoreBackup(request), ctx)
    ctx.stdout.write(f"Restored {backup.id} into {app_label(app)}\n")
    return 0


def backups_download(args: argparse.Namespace, ctx: Context) -> int:
    target = Path(args.output or f"{args.backup_id}.dump")
    if not target.is_absolute():
        target = ctx.cwd / target
    partial = target.with_name(f".{target.name}.partial")
    size = 0
    try:
        with (
            connect(args.data_dir, ctx.environ) as api,
            partial.open("wb") as out,
        ):
            for chunk in api.addons.DownloadBackup(platform_pb2.BackupRef(id=args.backup_id)):
                out.write(chunk.data)
                size += len(chunk.data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    ctx.stdout.write(f"Wrote {args.backup_id} to {target} ({human_bytes(size)})\n")
    return 0
