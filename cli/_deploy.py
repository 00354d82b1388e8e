"""``waka deploy``: upload a directory or tarball, show the build as it runs, report the release."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import BinaryIO

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._git import Git
from waka.cli._records import build_status
from waka.cli._tarball import write_source_tarball
from waka.v1 import platform_pb2

CHUNK_SIZE = 256 * 1024
TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def deploy(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    source = ctx.cwd / args.source
    with _source_tarball(source) as tarball:
        header = platform_pb2.BuildUpload.Header(
            app=app, source_version=_version_of(source, ctx), no_wait=args.no_wait
        )
        with (
            connect(args.data_dir, ctx.environ) as api,
            closing(api.builds.Create(upload_messages(header, tarball))) as events,
        ):
            finished = _follow_build(events, ctx)
    if finished is None:
        raise CliError("the controller ended the build stream before the build finished")
    if not finished.release:
        reason = finished.error or f"it ended {build_status(finished.status)} without a release"
        raise CliError(f"build {finished.id} failed: {reason}")
    # The build's own output already ends with "Released vN".
    return 0


def upload_messages(
    header: platform_pb2.BuildUpload.Header, tarball: BinaryIO
) -> Iterator[platform_pb2.BuildUpload]:
    """The request stream of Builds.Create: the header, then the tarball in chunks."""
    yield platform_pb2.BuildUpload(header=header)
    while chunk := tarball.read(CHUNK_SIZE):
        yield platform_pb2.BuildUpload(data=chunk)


def _follow_build(
    events: Iterator[platform_pb2.BuildEvent], ctx: Context
) -> platform_pb2.Build | None:
    finished: platform_pb2.Build | None = None
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "output":
            for line in event.output.lines:
                ctx.stdout.write(f"{line}\n")
            ctx.stdout.flush()
        elif kind == "finished":
            finished = event.finished
    return finished


@contextmanager
def _source_tarball(source: Path) -> Iterator[BinaryIO]:
    """The tarball to upload, open for reading: the given one, or one made from a directory."""
    if source.is_dir():
        # A temporary file rather than memory: sources with assets can be large.
        with tempfile.TemporaryFile() as tarball:
            write_source_tarball(source, tarball)
            tarball.seek(0)
            yield tarball
    elif source.is_file() and source.name.endswith(TARBALL_SUFFIXES):
        with source.open("rb") as tarball:
            yield tarball
    elif source.exists():
        raise CliError(f"{source} is neither a directory nor a .tar.gz/.tgz tarball")
    else:
        raise CliError(f"{source} does not exist")


def _version_of(source: Path, ctx: Context) -> str:
    """What the build shows as its source: the git commit of a repo, else the name."""
    if not source.is_dir():
        return source.name
    try:
        commit = Git(source, ctx.environ).head_commit()
    except CliError:
        commit = None  # no git on this machine: the directory's name will do
    return commit or source.resolve().name
