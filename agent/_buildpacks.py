"""Which buildpacks a build runs, and fetching the ones named by git URL.

An app's buildpacks are, in order of precedence: the list set with `waka buildpacks:set`, a
`.buildpacks` file in the source (one per line), or detection among the built-ins. Each entry is a
built-in name (`python`), an absolute path on this builder, or a git URL with an optional `#ref`.
Git buildpacks are cloned once per URL and ref and reused; a later fetch that fails falls back to
the cached copy with a warning, so a flaky network does not break every build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

GIT_TIMEOUT = 120
_URL_PREFIXES = ("http://", "https://", "git://", "ssh://", "file://", "git@")


class BuildpackError(Exception):
    """A buildpack cannot be used; the message names it and why."""


def read_buildpacks_file(app_dir: Path) -> list[str]:
    path = app_dir / ".buildpacks"
    if not path.is_file():
        return []
    entries = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(line)
    return entries


def is_git_url(name: str) -> bool:
    return name.startswith(_URL_PREFIXES)


class BuildpackResolver:
    def __init__(
        self, builtins: Path, cache: Path, *, say: Callable[[str], None] = lambda _line: None
    ) -> None:
        self._builtins = builtins
        self._cache = cache
        self._say = say

    def resolve(self, name: str) -> Path:
        """The local directory of a buildpack, fetching it first if it is a git URL."""
        if is_git_url(name):
            return self._fetch(name)
        builtin = self._builtins / name
        if "/" not in name and (builtin / "bin" / "compile").exists():
            return builtin
        path = Path(name)
        if path.is_absolute():
            if (path / "bin" / "compile").exists():
                return path
            raise BuildpackError(f"buildpack {name} has no bin/compile")
        known = sorted(p.name for p in self._builtins.iterdir() if (p / "bin" / "compile").exists())
        raise BuildpackError(f"unknown buildpack {name!r}; built-in ones are: {', '.join(known)}")

    def _fetch(self, url_ref: str) -> Path:
        url, _, ref = url_ref.partition("#")
        key = hashlib.sha256(url_ref.encode()).hexdigest()[:24]
        target = self._cache / key
        self._cache.mkdir(parents=True, exist_ok=True)
        staging = self._cache / f".{key}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        argv = ["git", "clone", "--quiet", "--depth", "1"]
        if ref:
            argv += ["--branch", ref]
        argv += ["--", url, str(staging)]
        self._say(f"-----> Fetching buildpack {url_ref}")
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            )
        except subprocess.TimeoutExpired:
            result = None
        if result is None or result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            why = "timed out" if result is None else result.stderr.strip().splitlines()[-1:]
            if (target / "bin" / "compile").exists():
                self._say(f" !     Could not update {url_ref} ({why}); using the cached copy")
                return target
            raise BuildpackError(f"cannot fetch buildpack {url_ref}: {why}")
        if not (staging / "bin" / "compile").exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise BuildpackError(f"buildpack {url_ref} has no bin/compile")
        shutil.rmtree(staging / ".git", ignore_errors=True)
        old = self._cache / f".{key}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
