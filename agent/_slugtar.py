"""Preparing a build directory for packing (prune), and unpacking slugs safely.

Slugs hold virtualenvs whose `bin/python` is an absolute symlink into the stack, so tarfile's
`data` filter, which refuses absolute link targets, is too strict. A link is resolved inside the
sandbox, never on the host, so its target is harmless; what is not harmless is a later entry
written *through* a link. The filter here allows absolute link targets and refuses any entry whose
path goes through a link in the same archive, and otherwise applies the `data` rules.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from fnmatch import fnmatch
from pathlib import Path

# Never in a slug: the repository, and buildpack bookkeeping.
ALWAYS_EXCLUDED = frozenset({".git"})


class SlugError(Exception):
    pass


def read_slugignore(build_dir: Path) -> list[str]:
    path = build_dir / ".slugignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            patterns.append(line.strip("/"))
    return patterns


def prune(build_dir: Path) -> list[str]:
    """Deletes what must not enter the slug (`.git`, `.slugignore` matches); returns what went.

    Pruning the tree itself (rather than filtering while packing) keeps the built tree identical to
    the slug, so the builder can run its own build without unpacking it.
    """
    patterns = read_slugignore(build_dir)
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(build_dir):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            relative = path.relative_to(build_dir).as_posix()
            if relative in ALWAYS_EXCLUDED or any(fnmatch(relative, p) for p in patterns):
                removed.append(relative)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                    dirnames.remove(name)
                else:
                    path.unlink()
    return removed


def _slug_filter(links: set[str]):
    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = member.name.removeprefix("./").rstrip("/")
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise SlugError(f"slug entry {member.name!r} goes through a symlink")
        if member.issym() and os.path.isabs(member.linkname):
            probe = member.replace(linkname=".", deep=False)
            tarfile.data_filter(probe, dest)
            return member.replace(uid=None, gid=None, uname=None, gname=None, deep=False)
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise SlugError(f"unsafe slug entry {member.name!r}: {exc}") from None

    return check


def unpack(slug: Path, dest: Path, uid: int) -> None:
    """Extracts a slug into `dest` (which must not exist yet) and gives the tree to `uid`."""
    dest.mkdir(parents=True)
    try:
        with tarfile.open(slug, "r:gz") as tar:
            members = tar.getmembers()
            links = {
                m.name.removeprefix("./").rstrip("/") for m in members if m.issym() or m.islnk()
            }
            # The filter below is the safety check S202 asks for.
            tar.extractall(dest, members=members, filter=_slug_filter(links))  # noqa: S202
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SlugError(f"cannot unpack slug {slug.name}: {exc}") from exc
    chown_tree(dest, uid)


def chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)
