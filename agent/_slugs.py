"""The node's slug cache: each slug fetched once, checked, unpacked once, shared by its dynos.

`<root>/<sha256>/` is an unpacked slug, complete once it exists (it is renamed into place from a
temporary directory). Dynos see it read-only as the lower layer of their /app overlay.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc
import trio

from waka.agent._slugtar import SlugError, chown_tree, unpack
from waka.agent._wire import Controller
from waka.v1.agent_pb2 import SlugRef


class SlugCache:
    def __init__(self, root: Path, controller: Callable[[], Controller | None]) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = root / ".tmp"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()
        self._controller = controller
        self._locks: dict[str, trio.Lock] = {}

    def path(self, sha: str) -> Path:
        return self.root / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_dir()

    def shas(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 64)

    async def ensure(self, slug: SlugRef, uid: int) -> Path:
        """The unpacked slug, fetching and unpacking it first if this node does not have it."""
        path = self.path(slug.sha256)
        if path.is_dir():
            return path
        lock = self._locks.setdefault(slug.sha256, trio.Lock())
        async with lock:
            if not path.is_dir():
                await trio.to_thread.run_sync(self._fetch_and_unpack, slug, uid)
        return path

    def _fetch_and_unpack(self, slug: SlugRef, uid: int) -> None:
        controller = self._controller()
        if controller is None:
            raise SlugError("the controller is unreachable, and this node does not have the slug")
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".tgz")
        archive = Path(name)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f:
                try:
                    for chunk in controller.stub.DownloadSlug(
                        slug, metadata=controller.metadata, timeout=600
                    ):
                        f.write(chunk.data)
                        digest.update(chunk.data)
                except grpc.RpcError as error:
                    raise SlugError(
                        f"cannot download slug {slug.sha256[:12]}: {error.details()}"
                    ) from None
            if digest.hexdigest() != slug.sha256:
                raise SlugError(
                    f"slug {slug.sha256[:12]} arrived with sha256"
                    f" {digest.hexdigest()[:12]}: refused"
                )
            staging = Path(tempfile.mkdtemp(dir=self._tmp)) / "root"
            unpack(archive, staging, uid)
            os.rename(staging, self.path(slug.sha256))
            shutil.rmtree(staging.parent, ignore_errors=True)
        finally:
            archive.unlink(missing_ok=True)

    def adopt_build(self, sha: str, build_dir: Path, uid: int) -> None:
        """Keeps a just-built tree as the unpacked slug: a builder never unpacks its own slug."""
        target = self.path(sha)
        if target.is_dir():
            shutil.rmtree(build_dir, ignore_errors=True)
            return
        chown_tree(build_dir, uid)
        try:
            os.rename(build_dir, target)
        except OSError as error:
            # Another build of the same slug (same sha256: same contents) got there first.
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
                raise
            shutil.rmtree(build_dir, ignore_errors=True)

    def collect(self, keep: set[str]) -> int:
        """Deletes unpacked slugs not in keep; returns how many went."""
        removed = 0
        for sha in self.shas():
            if sha not in keep:
                self.remove(sha)
                removed += 1
        return removed

    def remove(self, sha: str) -> None:
        shutil.rmtree(self.path(sha), ignore_errors=True)
