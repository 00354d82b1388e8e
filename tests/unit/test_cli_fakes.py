"""A fake waka controller for the CLI's unit tests: a real gRPC server on 127.0.0.1:0 serving the
platform services from canned data, and a runner that calls the CLI in-process.

Other test_cli_* modules import this one (pytest puts this directory on sys.path); it holds no
tests of its own.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from waka.cli._context import Context
from waka.cli.main import run
from waka.v1 import common_pb2, platform_pb2, platform_pb2_grpc

TOKEN = "test-token-123"
NOW = datetime(2026, 11, 26, 3, 6, 28, tzinfo=UTC)
FIVE_MINUTES_AGO = datetime(2026, 11, 26, 3, 1, 28, tzinfo=UTC)
WAKA_SCRIPT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "waka"


def timestamp(moment: datetime) -> Timestamp:
    return Timestamp(seconds=int(moment.timestamp()), nanos=moment.microsecond * 1000)


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def sample_app(name: str = "demo", release: int = 3) -> platform_pb2.App:
    return platform_pb2.App(
        name=name,
        id=f"id-{name}",
        created_at=timestamp(datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)),
        git_url=f"http://127.0.0.1:7401/{name}.git",
        web_url=f"http://{name}.localhost:7402/",
        current_release=release,
        stack="host",
        uid=20001,
    )


def sample_dynos(app: str = "demo") -> list[platform_pb2.Dyno]:
    changed = timestamp(FIVE_MINUTES_AGO)
    # Listed out of order on purpose: the CLI sorts by type, then by number.
    return [
        platform_pb2.Dyno(
            id="d4", app=app, name="worker.1", type="worker", state=common_pb2.DYNO_STATE_UP,
            release=3, node="node-1", command="python worker.py", size="standard-1x",
            state_changed_at=changed,
        ),
        platform_pb2.Dyno(
            id="d2", app=app, name="web.2", type="web", state=common_pb2.DYNO_STATE_CRASHED,
            release=3, node="node-2", command="python app.py", size="standard-1x",
            state_changed_at=changed, message="exited with status 1",
        ),
        platform_pb2.Dyno(
            id="d1", app=app, name="web.1", type="web", state=common_pb2.DYNO_STATE_UP,
            release=3, node="node-1", address="127.0.0.1:20001", command="python app.py",
            size="standard-1x", state_changed_at=changed,
        ),
    ]  # fmt: skip


def sample_releases(app: str = "demo") -> list[platform_pb2.Release]:
    def release(version: int, description: str, status: str) -> platform_pb2.Release:
        return platform_pb2.Release(
            version=version, app=app, description=description, user="admin",
            created_at=timestamp(FIVE_MINUTES_AGO), status=status, current=version == 3,
            slug_sha256="ab" * 32 if version != 1 else "", slug_size=12_345_678,
            process_types={"web": "python app.py", "worker": "python worker.py"},
            config_names=["DATABASE_URL", "SECRET"], buildpacks=["python"], stack="host",
        )  # fmt: skip

    return [
        release(2, "Deploy 1a2b3c4", "succeeded"),
        release(4, "Deploy 9f8e7d6", "failed"),
        release(3, "Set SECRET config vars", "succeeded"),
        release(1, "Initial release", "succeeded"),
    ]


def sample_builds(app: str = "demo") -> list[platform_pb2.Build]:
    return [
        platform_pb2.Build(
            id="b-ok", app=app, status=platform_pb2.BUILD_STATUS_SUCCEEDED,
            source_version="1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d", node="node-1",
            created_at=timestamp(datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)),
            finished_at=timestamp(datetime(2026, 11, 26, 3, 1, 5, tzinfo=UTC)),
            slug_sha256="cd" * 32, slug_size=2_000_000, buildpacks=["python"], release=2,
        ),
        platform_pb2.Build(
            id="b-bad", app=app, status=platform_pb2.BUILD_STATUS_FAILED,
            source_version="mydir", node="node-1",
            created_at=timestamp(datetime(2026, 11, 26, 3, 2, 0, tzinfo=UTC)),
            finished_at=timestamp(datetime(2026, 11, 26, 3, 2, 9, tzinfo=UTC)),
            error="no buildpack detected this app",
        ),
    ]  # fmt: skip


@dataclass
class FakePlatform:
    """The controller's state as the fake services read and change it."""

    apps: dict[str, platform_pb2.App] = field(default_factory=dict)
    dynos: dict[str, list[platform_pb2.Dyno]] = field(default_factory=dict)
    releases: dict[str, list[platform_pb2.Release]] = field(default_factory=dict)
    builds: dict[str, list[platform_pb2.Build]] = field(default_factory=dict)
    formation: dict[str, list[platform_pb2.FormationEntry]] = field(default_factory=dict)
    config: dict[str, dict[str, str]] = field(default_factory=dict)
    log_lines: list[common_pb2.LogLine] = field(default_factory=list)
    # Every call as (method, request) in arrival order.
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # Errors to answer instead: method name -> (status code, details).
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    # What a build ends with: a release number, or 0 and an error.
    build_release: int = 5
    build_error: str = ""
    uploaded_tarball: bytearray = field(default_factory=bytearray)
    upload_messages: list[str] = field(default_factory=list)
    tail_ended: threading.Event = field(default_factory=threading.Event)
    address: str = ""

    @classmethod
    def with_sample_data(cls) -> FakePlatform:
        return cls(
            apps={"demo": sample_app("demo"), "alpha": sample_app("alpha", release=0)},
            dynos={"demo": sample_dynos("demo"), "alpha": []},
            releases={"demo": sample_releases("demo"), "alpha": []},
            builds={"demo": sample_builds("demo"), "alpha": []},
            formation={
                "demo": [
                    platform_pb2.FormationEntry(
                        type="worker", quantity=1, size="standard-1x", command="python worker.py"
                    ),
                    platform_pb2.FormationEntry(
                        type="web", quantity=2, size="standard-1x", command="python app.py"
                    ),
                ]
            },
            config={"demo": {"SECRET": "s3cr=t", "DATABASE_URL": "postgres://db/demo"}},
            log_lines=[
                common_pb2.LogLine(
                    time_us=micros(datetime(2026, 11, 26, 3, 1, 28, 791299, tzinfo=UTC)),
                    app="demo", source="app", dyno="web.1", text="Listening on 0.0.0.0:20001",
                ),
                common_pb2.LogLine(
                    time_us=micros(datetime(2026, 11, 26, 3, 1, 29, 5, tzinfo=UTC)),
                    app="demo", source="waka", dyno="worker.1", text="State changed to up",
                ),
            ],
        )  # fmt: skip

    def calls_to(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]


class _Base:
    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform

    def _enter(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")
        self.platform.calls.append((method, request))
        if method in self.platform.failures:
            code, details = self.platform.failures[method]
            context.abort(code, details)

    def _app(self, name: str, context: grpc.ServicerContext) -> platform_pb2.App:
        if name not in self.platform.apps:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Couldn't find that app: {name}")
        return self.platform.apps[name]


class _Apps(_Base, platform_pb2_grpc.AppsServicer):
    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Apps.Create", request, context)
        name = request.name or "sleepy-meadow-4242"
        if name in self.platform.apps:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Name {name} is already taken")
        self.platform.apps[name] = sample_app(name, release=0)
        return self.platform.apps[name]

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Apps.List", request, context)
        return platform_pb2.AppList(apps=list(self.platform.apps.values()))

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Apps.Get", request, context)
        return self._app(request.app, context)

    def Destroy(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Apps.Destroy", request, context)
        self._app(request.app, context)
        if request.confirm != request.app:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "confirmation does not match")
        del self.platform.apps[request.app]
        return platform_pb2.Empty()

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Apps.Update", request, context)
        app = self._app(request.app, context)
        if request.set_maintenance:
            app.maintenance = request.maintenance
        if request.set_preboot:
            app.preboot = request.preboot
        if request.set_private_network:
            app.private_network = request.private_network
        return app


class _Builds(_Base, platform_pb2_grpc.BuildsServicer):
    def Create(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        header = next(request_iterator)
        self._enter("Builds.Create", header, context)
        self.platform.upload_messages.append(header.WhichOneof("part"))
        for message in request_iterator:
            self.platform.upload_messages.append(message.WhichOneof("part"))
            self.platform.uploaded_tarball.extend(message.data)
        build = platform_pb2.Build(
            id="b-new", app=header.header.app, status=platform_pb2.BUILD_STATUS_BUILDING
        )
        yield platform_pb2.BuildEvent(started=build)
        lines = ["-----> Python app detected", "-----> Installing requirements"]
        yield platform_pb2.BuildEvent(output=platform_pb2.OutputLines(lines=lines))
        done = ["-----> Done"]
        if self.platform.build_release:
            done.append(f"       Released v{self.platform.build_release}")
        yield platform_pb2.BuildEvent(output=platform_pb2.OutputLines(lines=done))
        build.release = self.platform.build_release
        build.error = self.platform.build_error
        build.status = (
            platform_pb2.BUILD_STATUS_SUCCEEDED
            if build.release
            else platform_pb2.BUILD_STATUS_FAILED
        )
        yield platform_pb2.BuildEvent(finished=build)

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Builds.List", request, context)
        self._app(request.app, context)
        return platform_pb2.BuildList(builds=self.platform.builds.get(request.app, []))

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Builds.Get", request, context)
        for build in self.platform.builds.get(request.app, []):
            if build.id == request.id:
                return build
        context.abort(grpc.StatusCode.NOT_FOUND, f"Couldn't find build {request.id}")


class _Releases(_Base, platform_pb2_grpc.ReleasesServicer):
    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Releases.List", request, context)
        self._app(request.app, context)
        return platform_pb2.ReleaseList(releases=self.platform.releases.get(request.app, []))

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Releases.Get", request, context)
        for release in self.platform.releases.get(request.app, []):
            if release.version == request.version:
                return release
        context.abort(grpc.StatusCode.NOT_FOUND, f"Couldn't find release v{request.version}")


class _Formation(_Base, platform_pb2_grpc.FormationServicer):
    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Formation.List", request, context)
        return platform_pb2.FormationList(entries=self.platform.formation.get(request.app, []))

    def Scale(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Formation.Scale", request, context)
        entries = {entry.type: entry for entry in self.platform.formation.get(request.app, [])}
        for change in request.changes:
            if change.type not in entries:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"No such process type {change.type}"
                )
            entry = entries[change.type]
            if change.has_quantity:
                base = entry.quantity if change.relative else 0
                entry.quantity = base + change.quantity
            if change.size:
                entry.size = change.size
        return platform_pb2.FormationList(entries=list(entries.values()))


class _Dynos(_Base, platform_pb2_grpc.DynosServicer):
    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Dynos.List", request, context)
        self._app(request.app, context)
        return platform_pb2.DynoList(dynos=self.platform.dynos.get(request.app, []))

    def Restart(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Dynos.Restart", request, context)
        return platform_pb2.Empty()


class _Config(_Base, platform_pb2_grpc.ConfigServicer):
    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Config.Get", request, context)
        self._app(request.app, context)
        return platform_pb2.ConfigVars(vars=self.platform.config.get(request.app, {}))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Config.Update", request, context)
        config = self.platform.config.setdefault(request.app, {})
        config.update(request.set)
        for name in request.unset:
            config.pop(name, None)
        return platform_pb2.ConfigChange(vars=config, release=7)


class _Logs(_Base, platform_pb2_grpc.LogsServicer):
    def Tail(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Logs.Tail", request, context)
        ended = self.platform.tail_ended
        context.add_callback(ended.set)
        yield common_pb2.LogBatch(lines=self.platform.log_lines)
        if request.follow:
            # A live tail never ends by itself; only the client's cancel stops it.
            ended.wait(timeout=30)


SERVICERS: tuple[tuple[Callable[[Any, grpc.Server], None], type[_Base]], ...] = (
    (platform_pb2_grpc.add_AppsServicer_to_server, _Apps),
    (platform_pb2_grpc.add_BuildsServicer_to_server, _Builds),
    (platform_pb2_grpc.add_ReleasesServicer_to_server, _Releases),
    (platform_pb2_grpc.add_FormationServicer_to_server, _Formation),
    (platform_pb2_grpc.add_DynosServicer_to_server, _Dynos),
    (platform_pb2_grpc.add_ConfigServicer_to_server, _Config),
    (platform_pb2_grpc.add_LogsServicer_to_server, _Logs),
)


@contextmanager
def serving(platform: FakePlatform) -> Iterator[FakePlatform]:
    """Serve ``platform`` on a free loopback port (recorded in ``platform.address``)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    for add, servicer in SERVICERS:
        add(servicer(platform), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    platform.address = f"127.0.0.1:{port}"
    try:
        yield platform
    finally:
        server.stop(grace=None).wait(timeout=10)


# ---------------------------------------------------------------- running the CLI


@dataclass
class Result:
    status: int
    out: str
    err: str


class TerminalOutput(io.StringIO):
    """Captured output that says it is a terminal, as a user's shell would be."""

    def isatty(self) -> bool:
        return True


def base_environ(home: Path) -> dict[str, str]:
    """An environment with nothing of the developer's: own HOME, no global git config."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


@dataclass
class Cli:
    """Runs ``waka`` in-process against a fake controller, from ``cwd``."""

    cwd: Path
    environ: dict[str, str]
    self_command: tuple[str, ...] = (str(WAKA_SCRIPT),)

    @classmethod
    def against(cls, platform: FakePlatform, tmp_path: Path) -> Cli:
        home = tmp_path / "home"
        work = tmp_path / "work"
        home.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        environ = base_environ(home) | {"WAKA_API": platform.address, "WAKA_API_KEY": TOKEN}
        return cls(cwd=work, environ=environ)

    def run(self, *argv: str, stdin: str = "", stdout: io.StringIO | None = None) -> Result:
        out = stdout if stdout is not None else io.StringIO()
        err = io.StringIO()
        ctx = Context(
            stdout=out,
            stderr=err,
            stdin=io.StringIO(stdin),
            environ=self.environ,
            cwd=self.cwd,
            clock=lambda: NOW,
            self_command=self.self_command,
        )
        status = run(list(argv), ctx)
        return Result(status=status, out=out.getvalue(), err=err.getvalue())

    def git(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd or self.cwd,
            env=self.environ,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()
