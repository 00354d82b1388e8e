"""``waka apps``, ``apps:create``, ``apps:info``, ``open``, ``apps:rename``, ``apps:destroy``."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._git import Git
from waka.cli._output import action, aligned, app_label, heading, write_json
from waka.cli._records import app_record
from waka.cli._remote import configure_remote, helper_command
from waka.cli._times import from_timestamp, heroku_time
from waka.v1 import platform_pb2


def list_apps(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        apps = sorted(api.apps.List(platform_pb2.Empty()).apps, key=lambda app: app.name)
    if args.json:
        write_json(ctx.stdout, [app_record(app) for app in apps])
        return 0
    if not apps:
        ctx.stdout.write("You have no apps.\n")
        return 0
    heading(ctx.stdout, "Apps")
    for app in apps:
        ctx.stdout.write(f"{app.name}\n")
    return 0


def create(args: argparse.Namespace, ctx: Context) -> int:
    # An empty name asks the controller for a random one, announced after `done`.
    label = app_label(args.name) if args.name else "app"
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Creating {label}") as outcome,
    ):
        app = api.apps.Create(platform_pb2.CreateAppRequest(name=args.name))
        if not args.name:
            outcome.detail = app_label(app.name)
    ctx.stdout.write(f"{app.web_url} | {app.git_url}\n")
    if not args.no_remote:
        git = Git(ctx.cwd, ctx.environ)
        # Like `heroku create`: only a repo without that remote gets one.
        if git.is_repository() and git.remote_url(args.remote) is None:
            configure_remote(git, args.remote, app.git_url, helper_command(ctx, args.data_dir))
    return 0


def info(args: argparse.Namespace, ctx: Context) -> int:
    name = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        app = api.apps.Get(platform_pb2.AppRef(app=name))
        dynos = api.dynos.List(platform_pb2.AppRef(app=name)).dynos
    counts = dict(sorted(Counter(dyno.type for dyno in dynos).items()))
    if args.json:
        write_json(ctx.stdout, {**app_record(app), "dynos": counts})
        return 0
    heading(ctx.stdout, app.name)
    release = f"v{app.current_release}" if app.current_release else "none"
    dyno_summary = ", ".join(f"{kind}: {count}" for kind, count in counts.items()) or "none"
    aligned(
        ctx.stdout,
        [
            ("Git URL", app.git_url),
            ("Web URL", app.web_url),
            ("Stack", app.stack),
            ("Release", release),
            ("Dynos", dyno_summary),
            ("Created", heroku_time(from_timestamp(app.created_at), ctx.clock())),
        ],
    )
    return 0


def open_app(args: argparse.Namespace, ctx: Context) -> int:
    """``waka open [PATH]``: the app's web address, in a browser when this machine has one."""
    name = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        app = api.apps.Get(platform_pb2.AppRef(app=name))
    url = app.web_url.rstrip("/") + "/" + args.path.lstrip("/")
    browser = browser_command(ctx.environ)
    if browser is None:
        # A server over ssh: a console browser taking over the terminal would be no help.
        ctx.stdout.write(f"{url}\n")
        return 0
    ctx.stdout.write(f"Opening {url}...\n")
    try:
        opened = subprocess.run([*browser, url], cwd=ctx.cwd, check=False)
    except OSError as error:
        raise CliError(f"cannot start the browser {shlex.join(browser)}: {error}") from None
    if opened.returncode != 0:
        raise CliError(f"the browser {shlex.join(browser)} exited {opened.returncode}")
    return 0


def browser_command(environ: Mapping[str, str]) -> list[str] | None:
    """$BROWSER if set, else xdg-open on a graphical session; None where there is neither."""
    if environ.get("BROWSER", "").strip():
        return shlex.split(environ["BROWSER"])
    graphical = environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    opener = shutil.which("xdg-open", path=environ.get("PATH"))
    return [opener] if graphical and opener else None


def rename(args: argparse.Namespace, ctx: Context) -> int:
    """``apps:rename NEWNAME``: the app's URLs change, and this repo's remotes follow."""
    name = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        before = api.apps.Get(platform_pb2.AppRef(app=name))
        with action(ctx.stdout, f"Renaming {name} to {args.new_name}"):
            app = api.apps.Rename(platform_pb2.RenameAppRequest(app=name, new_name=args.new_name))
    ctx.stdout.write(f"{app.web_url} | {app.git_url}\n")
    git = Git(ctx.cwd, ctx.environ)
    try:
        if git.is_repository():
            for remote, url in git.remotes().items():
                if url == before.git_url:
                    git.set_remote(remote, app.git_url)
                    ctx.stdout.write(f"Git remote {remote} updated\n")
    except CliError as error:
        ctx.stderr.write(f"warning: could not update the git remote: {error.message}\n")
    return 0


def destroy(args: argparse.Namespace, ctx: Context) -> int:
    name = resolve_app(args.name or args.app, ctx)
    if args.confirm != name:
        raise CliError(f"To proceed, re-run with --confirm {name}")
    with connect(args.data_dir, ctx.environ) as api:
        app = api.apps.Get(platform_pb2.AppRef(app=name))
        with action(ctx.stdout, f"Destroying {app_label(name)} (including all add-ons)"):
            api.apps.Destroy(platform_pb2.DestroyAppRequest(app=name, confirm=args.confirm))
    _remove_remotes_to(app.git_url, ctx)
    return 0


def _remove_remotes_to(git_url: str, ctx: Context) -> None:
    """Drop this repo's remotes that pointed at the destroyed app, as Heroku does."""
    git = Git(ctx.cwd, ctx.environ)
    try:
        if not git_url or not git.is_repository():
            return
        for remote, url in git.remotes().items():
            if url == git_url:
                git.remove_remote(remote)
    except CliError as error:
        # The app is gone either way; a remote left behind is worth a warning, not a failure.
        ctx.stderr.write(f"warning: could not remove the git remote: {error.message}\n")
