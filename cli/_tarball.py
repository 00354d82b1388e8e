"""The source tarball ``waka deploy`` uploads: a gzip'd tar of a directory.

Names are relative to the directory (``app.py``, ``lib/util.py``), ``.git`` is left out, and
only regular files, directories and symlinks go in (symlinks as links, never followed):
sockets, fifos and devices in a working tree are not source.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

SKIPPED_NAMES = frozenset({".git"})


def write_source_tarball(directory: Path, out: BinaryIO) -> int:
    """Write ``directory`` as a gzip'd tar to ``out``; returns how many entries went in."""
    count = 0
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for path in source_entries(directory):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(directory).as_posix())
            # Owners on the developer's machine mean nothing where the build runs.
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as content:
                    archive.addfile(info, content)
            else:
                archive.addfile(info)
            count += 1
    return count


def source_entries(directory: Path) -> list[Path]:
    """Every path that belongs in the tarball, parents before children, in a stable order."""
    entries: list[Path] = []
    for root, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_NAMES)
        base = Path(root)
        # os.walk lists a symlink to a directory among the directories without entering it.
        for name in sorted([*dirnames, *filenames]):
            if name in SKIPPED_NAMES:
                continue
            path = base / name
            if _is_source(path):
                entries.append(path)
    return sorted(entries, key=lambda path: path.relative_to(directory).parts)


def _is_source(path: Path) -> bool:
    mode = path.lstat().st_mode
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)
