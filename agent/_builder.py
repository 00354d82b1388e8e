"""Builds on this node: source in, buildpacks run in a sandbox, slug out.

The build runs as the app's unprivileged uid in a sandbox whose /app is the build directory, with
the app's build cache at /cache, its config at /env and the buildpacks read-only. What the
buildpacks print streams back to the controller (and from there to `git push`) line by line.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import logging
import os
import shutil
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import trio

from waka.agent._buildpacks import BuildpackError, BuildpackResolver, read_buildpacks_file
from waka.agent._procfile import ProcfileError, parse_procfile, parse_release_yaml
from waka.agent._sandbox import (
    AppMount,
    Bind,
    Driver,
    ResourceLimits,
    SandboxError,
    SandboxSpec,
)
from waka.agent._slugpack import LayerCache, pack
from waka.agent._slugs import SlugCache
from waka.agent._slugtar import chown_tree, prune
from waka.agent._wire import Controller
from waka.v1.agent_pb2 import BuildJob, BuildResult, SlugRef, SlugUpload, SourceRef

log = logging.getLogger("waka.agent")

# Built-in buildpacks are tried in this order; the first whose bin/detect matches wins.
DETECT_ORDER = ("python", "nodejs", "ruby", "go", "java", "php", "static", "procfile")
BUILD_PATH = "/waka/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UPLOAD_CHUNK = 256 * 1024
OUTPUT_BATCH_SECONDS = 0.05


class _Stopwatch:
    """Times the steps of a build for the agent's log."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self._laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = self._clock()
        self._laps.append((name, now - self._last))
        self._last = now

    def __str__(self) -> str:
        total = sum(t for _, t in self._laps)
        return f"{total:.2f}s (" + ", ".join(f"{n} {t:.2f}s" for n, t in self._laps) + ")"


class BuildFailed(Exception):
    """A build step failed; the message is the one-sentence reason the user sees."""


@dataclass(frozen=True)
class BuildTools:
    buildpacks_dir: Path
    runner_script: Path
    uv_binary: Path | None


def find_tools() -> BuildTools:
    buildpacks = Path(str(importlib.resources.files("waka.buildpacks")))
    runner = Path(str(importlib.resources.files("waka.agent"))) / "build-runner.sh"
    uv_binary: Path | None = None
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv  # noqa: PLC0415 - optional: builds fall back to pip without it

        uv_binary = Path(uv.find_uv_bin())
    return BuildTools(buildpacks, runner, uv_binary)


class Builder:
    def __init__(
        self,
        root: Path,
        *,
        driver: Driver,
        slugs: SlugCache,
        controller: Callable[[], Controller | None],
        tools: BuildTools,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root / "builds"
        self.cache_root = root / "cache"
        shutil.rmtree(self.root, ignore_errors=True)  # builds cut off by a restart are lost
        self.root.mkdir(parents=True)
        self.cache_root.mkdir(parents=True, exist_ok=True)
        self._layers = LayerCache(root / "layers")
        self._driver = driver
        self._slugs = slugs
        self._controller = controller
        self._tools = tools
        self._clock = clock
        self._cancels: dict[str, trio.CancelScope] = {}

    def collect(self, apps: set[str]) -> None:
        """Drops the build caches of apps that no longer exist."""
        for directory in self.cache_root.iterdir():
            if directory.is_dir() and directory.name not in apps:
                self.purge_cache(directory.name)

    def purge_cache(self, app: str) -> None:
        shutil.rmtree(self.cache_root / app, ignore_errors=True)
        self._layers.forget(app)

    @property
    def running(self) -> list[str]:
        return list(self._cancels)

    def cancel(self, build_id: str) -> None:
        scope = self._cancels.get(build_id)
        if scope is not None:
            scope.cancel()

    async def build(
        self,
        job: BuildJob,
        output: Callable[[list[str]], None],
        finish: Callable[[BuildResult], None],
    ) -> None:
        work = self.root / job.build_id
        work.mkdir()
        with trio.CancelScope() as scope:
            self._cancels[job.build_id] = scope
            try:
                result = await self._build(job, work, output)
            except BuildFailed as failure:
                result = BuildResult(build_id=job.build_id, ok=False, error=str(failure))
            except Exception as error:
                log.exception("build %s failed unexpectedly", job.build_id)
                result = BuildResult(
                    build_id=job.build_id, ok=False, error=f"internal build error: {error}"
                )
            finally:
                self._cancels.pop(job.build_id, None)
        if scope.cancelled_caught:
            result = BuildResult(build_id=job.build_id, ok=False, error="the build was canceled")
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, work, True)
        finish(result)

    async def _build(
        self, job: BuildJob, work: Path, output: Callable[[list[str]], None]
    ) -> BuildResult:
        app_dir = work / "app"
        source = work / "source.tar.gz"
        steps = _Stopwatch(self._clock)
        await trio.to_thread.run_sync(self._download_source, job.build_id, source)
        await trio.to_thread.run_sync(self._unpack_source, source, app_dir, job.uid)
        source.unlink()
        env_dir = work / "env"
        out_dir = work / "out"
        cache_dir = self.cache_root / job.app
        await trio.to_thread.run_sync(self._prepare, job, env_dir, out_dir, cache_dir)
        steps.lap("fetch")

        await self._run_buildpacks(job, app_dir, cache_dir, env_dir, out_dir, output)
        process_types, names = self._process_types(app_dir, out_dir)
        health_check = health_check_path(app_dir)
        output(["-----> Discovering process types", _describe_types(process_types)])
        steps.lap("buildpacks")

        slug_path = work / "slug.tgz"
        output(["-----> Compressing..."])
        await trio.to_thread.run_sync(prune, app_dir)
        sha, size = await trio.to_thread.run_sync(
            functools.partial(pack, app_dir, slug_path, layers=self._layers, scope=job.app)
        )
        output([f"       Done: {_megabytes(size)}"])
        if job.slug_max_bytes and size > job.slug_max_bytes:
            raise BuildFailed(
                f"the compiled slug is {_megabytes(size)}, over the limit of"
                f" {_megabytes(job.slug_max_bytes)}; add a .slugignore or remove large files"
            )
        if job.slug_warn_bytes and size > job.slug_warn_bytes:
            output(
                [
                    f" !     Warning: your slug size ({_megabytes(size)}) exceeds the soft limit"
                    f" ({_megabytes(job.slug_warn_bytes)}), which may slow down dyno starts."
                ]
            )
        steps.lap("pack")
        await trio.to_thread.run_sync(self._upload, job.build_id, slug_path, sha, size)
        steps.lap("upload")
        await trio.to_thread.run_sync(self._slugs.adopt_build, sha, app_dir, job.uid)
        steps.lap("keep")
        log.info("built %s: slug %s (%d bytes), %s", job.app, sha[:12], size, steps)
        return BuildResult(
            build_id=job.build_id,
            health_check_path=health_check,
            ok=True,
            slug=SlugRef(sha256=sha, size=size),
            process_types=process_types,
            buildpacks=names,
            stack=job.stack or "host",
        )

    # ------------------------------------------------------------ steps

    def _download_source(self, build_id: str, path: Path) -> None:
        controller = self._controller()
        if controller is None:
            raise BuildFailed("the controller is unreachable")
        try:
            with path.open("wb") as f:
                for chunk in controller.stub.DownloadSource(
                    SourceRef(build_id=build_id), metadata=controller.metadata, timeout=300
                ):
                    f.write(chunk.data)
        except grpc.RpcError as error:
            raise BuildFailed(f"cannot fetch the source: {error.details()}") from None

    @staticmethod
    def _unpack_source(source: Path, app_dir: Path, uid: int) -> None:
        app_dir.mkdir()
        try:
            with tarfile.open(source, "r:*") as tar:
                tar.extractall(app_dir, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise BuildFailed(f"cannot unpack the source: {error}") from None
        chown_tree(app_dir, uid)

    @staticmethod
    def _prepare(job: BuildJob, env_dir: Path, out_dir: Path, cache_dir: Path) -> None:
        env_dir.mkdir()
        for name, value in job.env.items():
            (env_dir / name).write_text(value)
        for path in (env_dir, *env_dir.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        out_dir.mkdir()
        os.chown(out_dir, job.uid, job.uid)
        cache_dir.mkdir(exist_ok=True)
        os.chown(cache_dir, job.uid, job.uid)

    def _buildpack_dirs(
        self, job: BuildJob, app_dir: Path, output: Callable[[list[str]], None]
    ) -> tuple[list[Bind], dict[str, str]]:
        binds: list[Bind] = []
        env: dict[str, str] = {}
        chosen = list(job.buildpacks) or read_buildpacks_file(app_dir)
        if chosen:
            resolver = BuildpackResolver(
                self._tools.buildpacks_dir,
                self.root.parent / "buildpacks",
                say=lambda line: output([line]),
            )
            paths = []
            for i, name in enumerate(chosen):
                try:
                    local = resolver.resolve(name)
                except BuildpackError as error:
                    raise BuildFailed(str(error)) from None
                # A private, writable copy: buildpacks write an `export` file into their own
                # directory for the ones after them (Heroku's multi-buildpack convention).
                copy = app_dir.parent / "buildpacks" / f"{i}-{local.name}"
                shutil.copytree(local, copy, symlinks=True)
                chown_tree(copy, job.uid)
                target = f"/buildpacks/{i}-{local.name}"
                binds.append(Bind(copy, target, writable=True))
                paths.append(target)
            env["WAKA_BUILDPACKS"] = " ".join(paths)
        else:
            order = [n for n in DETECT_ORDER if (self._tools.buildpacks_dir / n / "bin").is_dir()]
            for name in order:
                binds.append(Bind(self._tools.buildpacks_dir / name, f"/buildpacks/{name}"))
            env["WAKA_DETECT_ORDER"] = " ".join(f"/buildpacks/{n}" for n in order)
        return binds, env

    async def _run_buildpacks(
        self,
        job: BuildJob,
        app_dir: Path,
        cache_dir: Path,
        env_dir: Path,
        out_dir: Path,
        output: Callable[[list[str]], None],
    ) -> None:
        binds, env = await trio.to_thread.run_sync(self._buildpack_dirs, job, app_dir, output)
        binds += [
            Bind(cache_dir, "/cache", writable=True),
            Bind(env_dir, "/env"),
            Bind(out_dir, "/waka/out", writable=True),
            Bind(self._tools.runner_script, "/waka/build-runner.sh"),
        ]
        if self._tools.uv_binary is not None:
            binds.append(Bind(self._tools.uv_binary, "/waka/bin/uv"))
        env.update(
            {
                "HOME": "/app",
                "PATH": BUILD_PATH,
                "LANG": "C.UTF-8",
                "STACK": job.stack or "host",
                "SOURCE_VERSION": job.source_version,
                "REQUEST_ID": job.build_id,
            }
        )
        spec = SandboxSpec(
            hostname="build",
            argv=["bash", "/waka/build-runner.sh"],
            env=env,
            uid=job.uid,
            app_dir=app_dir,
            app_mount=AppMount.BIND_RW,
            binds=binds,
            # A build cannot starve the dynos on its node.
            limits=ResourceLimits(
                memory_bytes=job.memory_mb * 1024 * 1024 if job.memory_mb else None,
                cpu_shares=job.cpu_shares or None,
            ),
        )
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            sandbox = self._driver.start(
                spec, app_dir.parent / "run", stdin=_devnull(), stdout=write_fd, stderr=write_fd
            )
        except SandboxError as error:
            os.close(read_fd)
            raise BuildFailed(f"cannot start the build sandbox: {error}") from None
        finally:
            os.close(write_fd)
        timeout = job.timeout_seconds or 15 * 60
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_relay_lines, read_fd, output)
                with trio.move_on_after(timeout) as deadline:
                    code = await sandbox.wait()
                if deadline.cancelled_caught:
                    sandbox.kill()
            if deadline.cancelled_caught:
                raise BuildFailed(f"the build took longer than {_duration(timeout)}")
        finally:
            with trio.CancelScope(shield=True):
                if sandbox.is_running():
                    sandbox.signal_all(signal.SIGKILL)
                    sandbox.kill()
                with trio.move_on_after(10):
                    await sandbox.wait_until_empty()
                await trio.to_thread.run_sync(sandbox.cleanup)
        if code != 0:
            raise BuildFailed("a buildpack failed; its output above says why")

    @staticmethod
    def _process_types(app_dir: Path, out_dir: Path) -> tuple[dict[str, str], list[str]]:
        names_file = out_dir / "buildpacks"
        names = names_file.read_text().split("\n") if names_file.exists() else []
        names = [n for n in names if n]
        types: dict[str, str] = {}
        for release_file in sorted(out_dir.glob("release-*.yml")):
            try:
                types.update(parse_release_yaml(release_file.read_text()))
            except ValueError as error:
                raise BuildFailed(f"a buildpack's bin/release output is invalid: {error}") from None
        procfile = app_dir / "Procfile"
        if procfile.is_file():
            try:
                types.update(parse_procfile(procfile.read_text(errors="replace")))
            except ProcfileError as error:
                raise BuildFailed(str(error)) from None
        return types, names

    def _upload(self, build_id: str, slug: Path, sha: str, size: int) -> None:
        controller = self._controller()
        if controller is None:
            raise BuildFailed("the controller is unreachable; the slug cannot be stored")

        def parts() -> Iterator[SlugUpload]:
            yield SlugUpload(header=SlugUpload.Header(sha256=sha, size=size, build_id=build_id))
            with slug.open("rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    yield SlugUpload(data=chunk)

        try:
            controller.stub.UploadSlug(parts(), metadata=controller.metadata, timeout=600)
        except grpc.RpcError as error:
            raise BuildFailed(f"the slug upload failed: {error.details()}") from None


async def _relay_lines(fd: int, output: Callable[[list[str]], None]) -> None:
    """Relays the build's output as whole lines, a batch at a time, until the pipe closes."""
    stream = trio.lowlevel.FdStream(fd)
    pending = b""
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            if lines:
                output([line.decode("utf-8", "replace") for line in lines])
    if pending:
        output([pending.decode("utf-8", "replace")])


def _describe_types(types: dict[str, str]) -> str:
    if not types:
        return "       Procfile declares types -> (none)"
    return f"       Procfile declares types -> {', '.join(types)}"


def health_check_path(app_dir: Path) -> str:
    """The web health check an app declares in app.json, as Dokku reads it:
    `{"healthchecks": {"web": [{"path": "/health"}]}}`; empty when there is none."""
    try:
        manifest = json.loads((app_dir / "app.json").read_text())
    except (FileNotFoundError, ValueError):
        return ""
    checks = manifest.get("healthchecks", {}) if isinstance(manifest, dict) else {}
    for check in checks.get("web", []) if isinstance(checks, dict) else []:
        path = check.get("path") if isinstance(check, dict) else None
        if isinstance(path, str) and path.startswith("/"):
            return path
    return ""


def _duration(seconds: int) -> str:
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f}M"


_devnull_fd: int | None = None


def _devnull() -> int:
    global _devnull_fd  # noqa: PLW0603 - shared read-only fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd
