"""Content-addressed files: slugs and source tarballs, named by their sha256.

An upload is written to a temporary file while it is hashed, and only a complete upload whose hash
and size match what the sender declared is renamed into place, so a reader never sees half a blob
and a bad upload leaves nothing behind. These run on gRPC threads or worker threads, never on the
event loop.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from waka.controller._errors import InvalidInput, NotFound

CHUNK_SIZE = 256 * 1024
_SHA256_HEX = frozenset("0123456789abcdef")


def check_sha256(sha: str) -> str:
    if len(sha) != 64 or not set(sha) <= _SHA256_HEX:
        raise InvalidInput(f"{sha!r} is not a sha256 checksum (64 lowercase hex digits).")
    return sha


class Upload:
    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Verifies and stores the upload; returns its sha256. Stores nothing on a mismatch."""
        self._file.close()
        sha = self._hash.hexdigest()
        try:
            if expected_sha256 is not None and sha != expected_sha256:
                raise InvalidInput(
                    f"{self._store.kind} checksum mismatch: declared sha256 {expected_sha256}, "
                    f"received data has sha256 {sha}; nothing was stored."
                )
            if expected_size is not None and self.size != expected_size:
                raise InvalidInput(
                    f"{self._store.kind} size mismatch: declared {expected_size} bytes, "
                    f"received {self.size}; nothing was stored."
                )
            os.replace(self._path, self._store.path(sha))
        finally:
            self._path.unlink(missing_ok=True)
        return sha

    def abort(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path, *, kind: str, suffix: str) -> None:
        self.root = root
        self.kind = kind
        self._suffix = suffix
        self.tmp_dir = root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Uploads that were cut off by a crash are never completed: clear them.
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / f"{check_sha256(sha)}{self._suffix}"

    def has(self, sha: str) -> bool:
        return self.path(sha).exists()

    def size(self, sha: str) -> int:
        return self.path(sha).stat().st_size

    def begin(self) -> Upload:
        return Upload(self)

    def put_file(self, source: Path) -> str:
        upload = self.begin()
        try:
            with source.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return upload.finish()

    def chunks(self, sha: str) -> Iterator[bytes]:
        try:
            f = self.path(sha).open("rb")
        except FileNotFoundError:
            raise NotFound(f"{self.kind} {sha} is not stored on the controller.") from None
        with f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    def delete(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)


def check_source_tarball(path: Path) -> int:
    """Refuses a source tarball that is not a gzip'd tar or has unsafe entries; returns file count.

    Uses tarfile's own `data` extraction filter as the judge, so the rules are exactly the ones the
    agent applies when it unpacks (no `..` escapes, no links out, no devices), plus one stricter
    rule: an absolute path is refused rather than silently made relative.
    """
    count = 0
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                if member.name.startswith("/"):
                    raise InvalidInput(
                        f"Source tarball has an unsafe entry {member.name!r}: an absolute path."
                    )
                try:
                    tarfile.data_filter(member, "/nonexistent-destination")
                except tarfile.FilterError as exc:
                    raise InvalidInput(
                        f"Source tarball has an unsafe entry {member.name!r}: {exc}."
                    ) from None
                count += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"Source is not a readable tar archive: {exc}.") from None
    return count
