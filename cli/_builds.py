"""``waka builds`` and ``builds:info``."""

from __future__ import annotations

import argparse
from datetime import datetime

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._output import (
    action,
    aligned,
    app_label,
    heading,
    short_version,
    slug_text,
    table,
    write_json,
)
from waka.cli._records import build_record, build_status
from waka.cli._times import duration, from_timestamp, heroku_time
from waka.v1 import platform_pb2


def list_builds(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        builds = list(api.builds.List(platform_pb2.AppRef(app=app)).builds)
    builds.sort(key=lambda build: (build.created_at.seconds, build.created_at.nanos), reverse=True)
    if args.json:
        write_json(ctx.stdout, [build_record(build) for build in builds])
        return 0
    if not builds:
        ctx.stdout.write(f"{app_label(app)} has no builds yet\n")
        return 0
    heading(ctx.stdout, f"{app} Builds")
    now = ctx.clock()
    table(ctx.stdout, [build_row(build, now) for build in builds])
    return 0


def build_row(build: platform_pb2.Build, now: datetime) -> list[str]:
    """``<id>  succeeded  1a2b3c4  2026/11/26 03:01:28 +0000 (~ 5m ago)  1m 05s``."""
    return [
        build.id,
        build_status(build.status),
        short_version(build.source_version),
        heroku_time(from_timestamp(build.created_at), now),
        build_duration(build),
    ]


def build_duration(build: platform_pb2.Build) -> str:
    created = from_timestamp(build.created_at)
    finished = from_timestamp(build.finished_at)
    if created is None or finished is None:
        return ""
    return duration((finished - created).total_seconds())


def info(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        build = api.builds.Get(platform_pb2.BuildRef(app=app, id=args.build_id))
    if args.json:
        write_json(ctx.stdout, build_record(build))
        return 0
    now = ctx.clock()
    finished = from_timestamp(build.finished_at)
    heading(ctx.stdout, f"Build {build.id}")
    aligned(
        ctx.stdout,
        [
            ("Status", build_status(build.status)),
            ("Source", build.source_version),
            ("Node", build.node),
            ("Created", heroku_time(from_timestamp(build.created_at), now)),
            ("Finished", heroku_time(finished, now) if finished else ""),
            ("Duration", build_duration(build)),
            ("Release", f"v{build.release}" if build.release else "none"),
            ("Slug", slug_text(build.slug_sha256, build.slug_size)),
            ("Buildpacks", ", ".join(build.buildpacks)),
            ("Error", build.error),
        ],
    )
    return 0


def output(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        lines = api.builds.Output(platform_pb2.BuildRef(app=app, id=args.build_id)).lines
    for line in lines:
        ctx.stdout.write(f"{line}\n")
    return 0


def cancel(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Stopping the build of {app_label(app)}"),
    ):
        api.builds.Cancel(platform_pb2.BuildRef(app=app, id=args.build_id or ""))
    return 0


def purge_cache(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Purging the build cache of {app_label(app)}"),
    ):
        api.builds.PurgeCache(platform_pb2.AppRef(app=app))
    return 0


def collect_garbage(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        report = api.builds.CollectGarbage(platform_pb2.GarbageRequest(immediate=args.now))
    if args.json:
        write_json(
            ctx.stdout,
            {
                "slugs_removed": report.slugs_removed,
                "slug_bytes": report.slug_bytes,
                "sources_removed": report.sources_removed,
                "source_bytes": report.source_bytes,
                "releases_kept": report.releases_kept,
            },
        )
        return 0
    ctx.stdout.write(
        f"Removed {report.slugs_removed} slugs ({report.slug_bytes / 1e6:.1f} MB) and"
        f" {report.sources_removed} sources ({report.source_bytes / 1e6:.1f} MB); each app keeps"
        f" the slugs of its {report.releases_kept} newest releases.\n"
    )
    return 0
