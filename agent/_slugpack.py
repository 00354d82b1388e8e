"""Packing a build directory into a slug, fast when most of it did not change.

A slug is one gzip'd tar. gzip allows a file to be several compressed members back to back, and a
tar stream may be cut anywhere between entries, so the slug is written as one member per top-level
directory (`.venv`, `node_modules`, ...) plus one for everything else, then the end-of-archive
blocks. A directory whose metadata fingerprint (paths, sizes, modes, mtimes, link targets) matches
one packed before reuses that compressed member byte for byte: a code-only change recompresses
only the code. Output is deterministic (gzip mtime 0, owners 0), so an unchanged tree packs to the
same sha256, and any reader of .tgz files (tarfile, GNU tar) sees an ordinary slug.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

COMPRESS_LEVEL = 1
BLOCK = tarfile.BLOCKSIZE
_COPY_CHUNK = 1 << 20


def fingerprint(directory: Path) -> str:
    """A hash of what packing `directory` depends on, from metadata only (no file contents)."""
    digest = hashlib.sha256()
    for path in _walk(directory):
        info = os.lstat(path)
        link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
        digest.update(
            f"{path.relative_to(directory)}\0{info.st_mode}\0{info.st_size}\0"
            f"{info.st_mtime_ns}\0{link}\n".encode()
        )
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """root, then its entries depth first in sorted order (not following links)."""
    yield root
    if root.is_dir() and not root.is_symlink():
        for name in sorted(os.listdir(root)):
            yield from _walk(root / name)


def _tar_info(path: Path, arcname: str) -> tarfile.TarInfo:
    info = os.lstat(path)
    entry = tarfile.TarInfo(arcname)
    entry.mode = stat.S_IMODE(info.st_mode)
    entry.mtime = int(info.st_mtime)
    # Owners are meaningless across nodes; the unpacking agent gives the tree to the app's uid.
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    if stat.S_ISDIR(info.st_mode):
        entry.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(info.st_mode):
        entry.type = tarfile.SYMTYPE
        entry.linkname = os.readlink(path)
    elif stat.S_ISREG(info.st_mode):
        entry.type = tarfile.REGTYPE
        entry.size = info.st_size
    else:
        raise ValueError(f"{path} is neither a file, a directory nor a symlink")
    return entry


def _write_entries(out: gzip.GzipFile, paths: Iterator[Path], root: Path) -> None:
    for path in paths:
        relative = path.relative_to(root).as_posix()
        arcname = "." if relative == "." else f"./{relative}"
        try:
            entry = _tar_info(path, arcname)
        except ValueError:
            continue  # sockets and fifos have no place in a slug
        out.write(entry.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if entry.type == tarfile.REGTYPE:
            with path.open("rb") as f:
                shutil.copyfileobj(f, out, _COPY_CHUNK)
            remainder = entry.size % BLOCK
            if remainder:
                out.write(b"\0" * (BLOCK - remainder))


class _Sink:
    """Writes to several files at once, hashing what goes to the slug."""

    def __init__(self, out: BinaryIO, digest: hashlib._Hash, copy: BinaryIO | None = None):
        self._out = out
        self._digest = digest
        self._copy = copy

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._digest.update(data)
        if self._copy is not None:
            self._copy.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _compress(sink: _Sink, paths: Iterator[Path], root: Path) -> None:
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz:  # type: ignore[arg-type]
        _write_entries(gz, paths, root)


class LayerCache:
    """Compressed members of directories packed before, by app and directory name."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = root
        self._keep = keep
        self.hits = 0

    def _dir(self, scope: str, name: str) -> Path:
        safe = hashlib.sha256(f"{scope}\0{name}".encode()).hexdigest()[:32]
        return self.root / safe

    def copy_into(self, scope: str, name: str, print_: str, sink: _Sink) -> bool:
        """Writes the cached member into sink; False if there is none."""
        path = self._dir(scope, name) / f"{print_}.gz"
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return False
        with f:
            while chunk := f.read(_COPY_CHUNK):
                sink.write(chunk)
        os.utime(path)  # most recently used
        self.hits += 1
        return True

    def forget(self, scope: str) -> None:
        """Drops every cached member of one scope (an app whose build cache is purged)."""
        for marker in self.root.glob("*/.scope"):
            if marker.read_text() == scope:
                shutil.rmtree(marker.parent, ignore_errors=True)

    def writer(self, scope: str, name: str, print_: str) -> _LayerWriter:
        return _LayerWriter(self, self._dir(scope, name), print_, scope)

    def _trim(self, directory: Path) -> None:
        members = sorted(directory.glob("*.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in members[self._keep :]:
            old.unlink(missing_ok=True)


class _LayerWriter:
    """A new cache entry, kept only if the member was written completely."""

    def __init__(self, cache: LayerCache, directory: Path, print_: str, scope: str) -> None:
        self._cache = cache
        self._scope = scope
        self._directory = directory
        self._final = directory / f"{print_}.gz"
        self._tmp = directory / f".{print_}.tmp"

    def __enter__(self) -> BinaryIO:
        self._directory.mkdir(parents=True, exist_ok=True)
        (self._directory / ".scope").write_text(self._scope)
        self._file = self._tmp.open("wb")
        return self._file

    def __exit__(self, kind: object, *_: object) -> None:
        self._file.close()
        if kind is None:
            os.replace(self._tmp, self._final)
            self._cache._trim(self._directory)
        else:
            self._tmp.unlink(missing_ok=True)


def pack(
    build_dir: Path, out: Path, *, layers: LayerCache | None = None, scope: str = ""
) -> tuple[str, int]:
    """Writes the slug of `build_dir` to `out`; returns (sha256, size)."""
    names = sorted(os.listdir(build_dir))
    directories = [
        n for n in names if (build_dir / n).is_dir() and not (build_dir / n).is_symlink()
    ]
    others = [build_dir / n for n in names if n not in directories]
    digest = hashlib.sha256()
    with out.open("wb") as f:
        _compress(_Sink(f, digest), iter([build_dir, *others]), build_dir)
        for name in directories:
            directory = build_dir / name
            if layers is None:
                _compress(_Sink(f, digest), _walk(directory), build_dir)
                continue
            print_ = fingerprint(directory)
            if not layers.copy_into(scope, name, print_, _Sink(f, digest)):
                with layers.writer(scope, name, print_) as copy:
                    _compress(_Sink(f, digest, copy), _walk(directory), build_dir)
        _compress_raw(_Sink(f, digest), b"\0" * (2 * BLOCK))
    return digest.hexdigest(), out.stat().st_size


def _compress_raw(sink: _Sink, data: bytes) -> None:
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz:  # type: ignore[arg-type]
        gz.write(data)
