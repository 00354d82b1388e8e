"""``waka releases`` and ``releases:info``."""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import (
    action,
    aligned,
    app_label,
    heading,
    slug_text,
    table,
    write_json,
)
from waka.cli._records import release_record
from waka.cli._times import from_timestamp, heroku_time
from waka.v1 import platform_pb2

SUCCEEDED = "succeeded"


def list_releases(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    if args.num < 0:
        raise CliError(f"--num must be 0 (all) or more, not {args.num}")
    with connect(args.data_dir, ctx.environ) as api:
        current = api.apps.Get(platform_pb2.AppRef(app=app)).current_release
        listed = api.releases.List(platform_pb2.ListReleasesRequest(app=app, limit=args.num))
    releases = sorted(listed.releases, key=lambda release: release.version, reverse=True)
    if args.num:
        releases = releases[: args.num]
    if args.json:
        write_json(ctx.stdout, [release_record(release) for release in releases])
        return 0
    if not releases:
        ctx.stdout.write(f"{app_label(app)} has no releases yet\n")
        return 0
    heading(ctx.stdout, f"{app} Releases - Current: {f'v{current}' if current else 'none'}")
    now = ctx.clock()
    table(ctx.stdout, [release_row(release, now) for release in releases])
    return 0


def release_row(release: platform_pb2.Release, now: datetime) -> list[str]:
    """``v3  Deploy 1a2b3c4  admin  2026/11/26 03:01:28 +0000 (~ 5m ago)``."""
    return [
        f"v{release.version}",
        change_text(release),
        release.user,
        heroku_time(from_timestamp(release.created_at), now),
    ]


def change_text(release: platform_pb2.Release) -> str:
    """The description, with the status when the release did not (yet) succeed."""
    if release.status and release.status != SUCCEEDED:
        return f"{release.description} ({release.status})"
    return release.description


def info(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        if args.version:
            version = parse_version(args.version)
        else:
            version = api.apps.Get(platform_pb2.AppRef(app=app)).current_release
            if not version:
                raise CliError(f"{app_label(app)} has no releases yet")
        release = api.releases.Get(platform_pb2.ReleaseRef(app=app, version=version))
    if args.json:
        write_json(ctx.stdout, release_record(release))
        return 0
    heading(ctx.stdout, f"Release v{release.version}")
    aligned(
        ctx.stdout,
        [
            ("Change", change_text(release)),
            ("By", release.user),
            ("When", heroku_time(from_timestamp(release.created_at), ctx.clock())),
            ("Status", release.status),
            ("Current", "yes" if release.current else "no"),
            ("Slug", slug_text(release.slug_sha256, release.slug_size)),
            ("Stack", release.stack),
            ("Buildpacks", ", ".join(release.buildpacks)),
            ("Process types", ", ".join(sorted(release.process_types))),
            ("Config", ", ".join(sorted(release.config_names))),
        ],
    )
    return 0


def parse_version(text: str) -> int:
    """``v3`` or ``3`` -> 3."""
    match = re.fullmatch(r"v?([1-9][0-9]*)", text.strip())
    if not match:
        raise CliError(f'invalid release "{text}": expected vN, e.g. v3')
    return int(match[1])


def rollback(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    version = parse_version(args.version) if args.version else 0
    target = f"v{version}" if version else "the previous release"
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Rolling back {app_label(app)} to {target}") as outcome,
    ):
        release = api.releases.Rollback(platform_pb2.ReleaseRef(app=app, version=version))
        outcome.detail = f"v{release.version}"
    ctx.stdout.write(f"{release.description.replace('Rollback to', 'Rolled back to')}\n")
    return 0


def retry(args: argparse.Namespace, ctx: Context) -> int:
    """``releases:retry``: the latest release again, so its release phase runs again."""
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Retrying the latest release of {app_label(app)}") as outcome,
    ):
        release = api.releases.Retry(platform_pb2.AppRef(app=app))
        outcome.detail = f"v{release.version}"
    ctx.stdout.write(f"{release.description}\n")
    return 0


def output(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    version = parse_version(args.version) if args.version else 0
    with connect(args.data_dir, ctx.environ) as api:
        lines = api.releases.Output(platform_pb2.ReleaseRef(app=app, version=version)).lines
    for line in lines:
        ctx.stdout.write(f"{line}\n")
    return 0
