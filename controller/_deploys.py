"""Builds: from a source tarball to a release, with the output streamed to whoever pushed.

The controller stores the source, picks a builder agent and sends it a build job; the agent fetches
the source, runs the buildpacks in a sandbox, uploads the slug and reports the result. Only a build
whose slug arrived intact becomes a release. One build runs at a time per app; a second push waits.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from sqlite_utils import Database

from waka.controller._apps import find_app
from waka.controller._blobs import BlobStore, check_source_tarball
from waka.controller._convert import timestamp
from waka.controller._errors import Conflict, NotFound
from waka.controller._fleet import AgentSession, Fleet
from waka.controller._logs import LogHub
from waka.controller._releaser import Releaser
from waka.controller._releases import SlugInfo, current_config
from waka.controller._store import Store
from waka.v1.agent_pb2 import (
    BuildJob,
    BuildResult,
    CancelBuild,
    ControllerMessage,
    PurgeCache,
)
from waka.v1.platform_pb2 import Build, BuildStatus

Emit = Callable[[str], Awaitable[None]]

DEFAULT_BUILD_TIMEOUT = 15 * 60
_STATUS = {
    "pending": BuildStatus.BUILD_STATUS_PENDING,
    "building": BuildStatus.BUILD_STATUS_BUILDING,
    "succeeded": BuildStatus.BUILD_STATUS_SUCCEEDED,
    "failed": BuildStatus.BUILD_STATUS_FAILED,
}


@dataclass
class _RunningBuild:
    node_id: str
    source_sha: str
    app: str
    send: trio.MemorySendChannel[list[str] | BuildResult]
    receive: trio.MemoryReceiveChannel[list[str] | BuildResult]


@dataclass(frozen=True)
class BuildLimits:
    """What a build may use; Heroku's figures by default (slugs: warn at 300 MB, refuse 500 MB)."""

    slug_warn_bytes: int = 300 * 1000 * 1000
    slug_max_bytes: int = 500 * 1000 * 1000
    # A build gets at most this much memory and this CPU weight, so it cannot starve dynos.
    memory_mb: int = 2048
    cpu_shares: int = 512


@dataclass
class _AppLock:
    lock: trio.Lock = field(default_factory=trio.Lock)
    users: int = 0


def build_message(row: dict, app_name: str) -> Build:
    build = Build(
        id=row["id"],
        app=app_name,
        status=_STATUS.get(row["status"], BuildStatus.BUILD_STATUS_UNSPECIFIED),
        source_version=row["source_version"],
        node=row.get("node_name") or "",
        created_at=timestamp(row["created_at"]),
        slug_sha256=row["slug_sha256"] or "",
        slug_size=row["slug_size"] or 0,
        buildpacks=json.loads(row["buildpacks"]),
        error=row["error"],
        release=row["release_version"] or 0,
    )
    if row["finished_at"]:
        build.finished_at.CopyFrom(timestamp(row["finished_at"]))
    return build


class Deployer:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        hub: LogHub,
        releaser: Releaser,
        *,
        sources: BlobStore,
        slugs: BlobStore,
        build_logs: Path,
        clock: Callable[[], float] = time.time,
        build_timeout: float = DEFAULT_BUILD_TIMEOUT,
        limits: BuildLimits | None = None,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._hub = hub
        self._releaser = releaser
        self._sources = sources
        self._slugs = slugs
        self._build_logs = build_logs
        build_logs.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._build_timeout = build_timeout
        self._limits = limits or BuildLimits()
        self._running: dict[str, _RunningBuild] = {}
        self._app_locks: dict[str, _AppLock] = {}

    # ------------------------------------------------------------ from agents

    def on_output(self, build_id: str, lines: list[str]) -> None:
        running = self._running.get(build_id)
        if running is not None:
            running.send.send_nowait(lines)

    def on_result(self, build_id: str, result: BuildResult) -> None:
        running = self._running.get(build_id)
        if running is not None:
            running.send.send_nowait(result)

    def on_node_lost(self, node_id: str) -> None:
        for build_id, running in self._running.items():
            if running.node_id == node_id:
                running.send.send_nowait(
                    BuildResult(build_id=build_id, ok=False, error="the builder node disconnected")
                )

    async def cancel(self, app_name: str, build_id: str) -> Build:
        """Asks the builder to stop a running build (the app's current one if no id)."""
        for running_id, running in self._running.items():
            if running.app == app_name and (not build_id or running_id.startswith(build_id)):
                session = self._fleet.session(running.node_id)
                if session is not None:
                    session.send(ControllerMessage(cancel_build=CancelBuild(build_id=running_id)))
                return await self.get(app_name, running_id)
        raise NotFound(
            f"No build of {app_name} is running" + (f" with id {build_id}." if build_id else ".")
        )

    async def output(self, app_name: str, build_id: str) -> list[str]:
        build = await self.get(app_name, build_id)
        path = trio.Path(self._build_logs / f"{build.id}.log")
        if not await path.exists():
            return []
        return (await path.read_text(encoding="utf-8", errors="replace")).splitlines()

    def running_sources(self) -> frozenset[str]:
        return frozenset(running.source_sha for running in self._running.values())

    def purge_cache(self, app_name: str) -> int:
        """Tells every connected builder to empty the app's build cache; returns how many."""
        sessions = self._fleet.sessions()
        for session in sessions:
            session.send(ControllerMessage(purge_cache=PurgeCache(app=app_name)))
        return len(sessions)

    def source_for(self, build_id: str, node_id: str) -> str:
        running = self._running.get(build_id)
        if running is None or running.node_id != node_id:
            raise NotFound(f"Build {build_id} is not assigned to this node.")
        return running.source_sha

    # ------------------------------------------------------------ the pipeline

    async def deploy(
        self,
        app_name: str,
        source: Path,
        source_version: str,
        user: str,
        emit: Emit,
        *,
        wait: bool = True,
    ) -> Build:
        """Builds `source` (a gzip'd tar) for the app and releases it; returns the build record.
        A deploy while the app is building waits its turn, or with `wait=False` is refused."""
        await trio.to_thread.run_sync(check_source_tarball, source)
        app = await self._store.read(lambda db: find_app(db, app_name))
        source_sha = await trio.to_thread.run_sync(self._sources.put_file, source)

        app_lock = self._app_locks.setdefault(app_name, _AppLock())
        app_lock.users += 1
        try:
            if app_lock.lock.locked():
                if not wait:
                    raise Conflict(
                        f"{app_name} is already building; not waiting for it (--no-wait). Try"
                        " again when `waka builds` shows it finished, or deploy without --no-wait."
                    )
                await emit(f"-----> Waiting for the build already running for {app_name} to finish")
            async with app_lock.lock:
                return await self._build(
                    app.id, app_name, app.uid, source_sha, source_version, user, emit
                )
        finally:
            app_lock.users -= 1
            if not app_lock.users:
                del self._app_locks[app_name]

    async def _build(
        self,
        app_id: str,
        app_name: str,
        uid: int,
        source_sha: str,
        source_version: str,
        user: str,
        emit: Emit,
    ) -> Build:
        build_id = uuid.uuid4().hex
        now = self._clock()

        def insert(db: Database) -> tuple[dict[str, str], list[str], str]:
            db.execute(
                "INSERT INTO builds (id, app_id, status, source_version, source_sha256, user,"
                " created_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                (build_id, app_id, source_version, source_sha, user, now),
            )
            (buildpacks, stack) = db.execute(
                "SELECT buildpacks, stack FROM apps WHERE id = ?", (app_id,)
            ).fetchone()
            return current_config(db, app_id), json.loads(buildpacks), stack

        config, buildpacks, stack = await self._store.write(insert)
        log_path = self._build_logs / f"{build_id}.log"
        with log_path.open("a", encoding="utf-8") as log:

            async def output(lines: list[str]) -> None:
                log.write("".join(f"{line}\n" for line in lines))
                log.flush()
                for line in lines:
                    await emit(line)

            self._hub.emit(app_name, f"Build started by {user}")
            builder = self._pick_builder()
            if builder is None:
                return await self._finish_failed(
                    build_id, app_name, output, "no agent is connected to build on"
                )
            job = BuildJob(
                build_id=build_id,
                app=app_name,
                uid=uid,
                source_sha256=source_sha,
                source_version=source_version,
                buildpacks=buildpacks,
                env=config,
                stack=stack,
                timeout_seconds=int(self._build_timeout),
                slug_warn_bytes=self._limits.slug_warn_bytes,
                slug_max_bytes=self._limits.slug_max_bytes,
                memory_mb=self._limits.memory_mb,
                cpu_shares=self._limits.cpu_shares,
            )
            send, receive = trio.open_memory_channel[list[str] | BuildResult](float("inf"))
            self._running[build_id] = _RunningBuild(
                builder.node_id, source_sha, app_name, send, receive
            )
            try:
                await self._store.write(
                    lambda db: db.execute(
                        "UPDATE builds SET status = 'building', node_id = ? WHERE id = ?",
                        (builder.node_id, build_id),
                    )
                )
                if not builder.send(ControllerMessage(build_job=job)):
                    return await self._finish_failed(
                        build_id, app_name, output, "the builder node disconnected"
                    )
                result = await self._follow(build_id, builder, receive, output)
            finally:
                del self._running[build_id]
            if not result.ok:
                return await self._finish_failed(build_id, app_name, output, result.error)
            return await self._release(
                build_id, app_id, app_name, user, source_version, result, output
            )

    async def _follow(
        self,
        build_id: str,
        builder: AgentSession,
        receive: trio.MemoryReceiveChannel[list[str] | BuildResult],
        output: Callable[[list[str]], Awaitable[None]],
    ) -> BuildResult:
        # The agent enforces the compile timeout; this one only guards against a silent agent.
        with trio.move_on_after(self._build_timeout + 120):
            async for item in receive:
                if isinstance(item, BuildResult):
                    return item
                await output(item)
        builder.send(ControllerMessage(cancel_build=CancelBuild(build_id=build_id)))
        return BuildResult(build_id=build_id, ok=False, error="the build timed out")

    async def _finish_failed(
        self,
        build_id: str,
        app_name: str,
        output: Callable[[list[str]], Awaitable[None]],
        error: str,
    ) -> Build:
        await output([f" !     Build failed: {error}", f" !     Push rejected to {app_name}."])
        row = await self._store.write(lambda db: self._mark(db, build_id, "failed", error=error))
        self._hub.emit(app_name, f"Build failed: {error}")
        return build_message(row, app_name)

    async def _release(
        self,
        build_id: str,
        app_id: str,
        app_name: str,
        user: str,
        source_version: str,
        result: BuildResult,
        output: Callable[[list[str]], Awaitable[None]],
    ) -> Build:
        sha = result.slug.sha256
        if not sha or not self._slugs.has(sha):
            return await self._finish_failed(
                build_id, app_name, output, "the builder reported a slug that never arrived"
            )
        slug = SlugInfo(
            sha256=sha,
            size=self._slugs.size(sha),
            process_types=dict(result.process_types),
            buildpacks=list(result.buildpacks),
            stack=result.stack,
            health_check_path=result.health_check_path,
        )
        row = await self._store.write(lambda db: self._mark(db, build_id, "succeeded", slug=slug))
        self._hub.emit(app_name, f"Build succeeded by {user}")
        self._hub.emit(app_name, f"Deploy {source_version[:7]} by {user}")
        await output(["-----> Launching..."])

        async def emit(line: str) -> None:
            await output([line])

        version, live = await self._releaser.release(
            app_name,
            slug=slug,
            description=f"Deploy {source_version[:7]}",
            user=user,
            emit=emit,
        )
        build = build_message(row, app_name)
        if live:
            await self._store.write(
                lambda db: db.execute(
                    "UPDATE builds SET release_version = ? WHERE id = ?", (version, build_id)
                )
            )
            build.release = version
            await output([f"       Released v{version}"])
        else:
            build.error = f"the release command failed, so v{version} was not deployed"
            await output([f" !     Push rejected to {app_name}: v{version} failed."])
        return build

    def _mark(
        self,
        db: Database,
        build_id: str,
        status: str,
        *,
        error: str = "",
        slug: SlugInfo | None = None,
    ) -> dict:
        db.execute(
            "UPDATE builds SET status = ?, error = ?, finished_at = ?, slug_sha256 = ?,"
            " slug_size = ?, buildpacks = ?, process_types = ?, stack = ? WHERE id = ?",
            (
                status,
                error,
                self._clock(),
                slug.sha256 if slug else None,
                slug.size if slug else None,
                json.dumps(slug.buildpacks if slug else []),
                json.dumps(slug.process_types if slug else {}),
                slug.stack if slug else None,
                build_id,
            ),
        )
        return next(
            db.query(
                "SELECT b.*, n.name AS node_name FROM builds b LEFT JOIN nodes n"
                " ON n.id = b.node_id WHERE b.id = ?",
                (build_id,),
            )
        )

    def _pick_builder(self) -> AgentSession | None:
        sessions = [s for s in self._fleet.sessions() if not s.closed]
        if not sessions:
            return None
        return min(sessions, key=lambda s: (len(s.builds), s.name))

    # ------------------------------------------------------------ records

    async def list(self, app_name: str) -> list[Build]:
        def read(db: Database) -> list[dict]:
            app = find_app(db, app_name)
            return list(
                db.query(
                    "SELECT b.*, n.name AS node_name FROM builds b LEFT JOIN nodes n"
                    " ON n.id = b.node_id WHERE b.app_id = ? ORDER BY b.created_at DESC",
                    (app.id,),
                )
            )

        return [build_message(row, app_name) for row in await self._store.read(read)]

    async def get(self, app_name: str, build_id: str) -> Build:
        def read(db: Database) -> dict:
            app = find_app(db, app_name)
            rows = list(
                db.query(
                    "SELECT b.*, n.name AS node_name FROM builds b LEFT JOIN nodes n"
                    " ON n.id = b.node_id WHERE b.app_id = ? AND b.id LIKE ?",
                    (app.id, f"{build_id}%"),
                )
            )
            if len(rows) != 1:
                raise NotFound(f"Build {build_id} not found for {app_name}.")
            return rows[0]

        return build_message(await self._store.read(read), app_name)
