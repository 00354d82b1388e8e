"""The few git operations the CLI needs, run with the ``git`` binary and argument lists."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from waka.cli._errors import CliError

DEFAULT_REMOTE = "waka"
# `git remote get-url` exits 2 when the remote does not exist (128 outside a repository).
_NO_SUCH_REMOTE = 2


class Git:
    """git in one working directory, with the command's environment."""

    def __init__(self, cwd: Path, environ: Mapping[str, str]) -> None:
        self.cwd = cwd
        self._environ = dict(environ)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=self._environ,
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            raise CliError("git is not installed (no `git` on PATH)") from None

    def _checked(self, *args: str) -> str:
        result = self._run(*args)
        if result.returncode != 0:
            reason = result.stderr.strip() or f"exit status {result.returncode}"
            raise CliError(f"git {' '.join(args)} failed: {reason}")
        return result.stdout

    def is_repository(self) -> bool:
        return self._run("rev-parse", "--git-dir").returncode == 0

    def remote_url(self, name: str) -> str | None:
        """The URL of remote ``name``, or None outside a repository or without that remote."""
        result = self._run("remote", "get-url", name)
        if result.returncode == 0:
            return result.stdout.strip()
        if result.returncode == _NO_SUCH_REMOTE or not self.is_repository():
            return None
        raise CliError(f"git remote get-url {name} failed: {result.stderr.strip()}")

    def remotes(self) -> dict[str, str]:
        """Every remote of the repository by name, with its URL."""
        names = self._checked("remote").split()
        urls = {name: self.remote_url(name) for name in names}
        return {name: url for name, url in urls.items() if url is not None}

    def set_remote(self, name: str, url: str) -> None:
        """Point remote ``name`` at ``url``, adding it if needed."""
        if self.remote_url(name) is None:
            self._checked("remote", "add", name, url)
        else:
            self._checked("remote", "set-url", name, url)

    def remove_remote(self, name: str) -> None:
        self._checked("remote", "remove", name)

    def set_config(self, key: str, value: str) -> None:
        self._checked("config", "--local", "--replace-all", key, value)

    def head_commit(self) -> str | None:
        """The commit HEAD names, or None outside a repository or before the first commit."""
        result = self._run("rev-parse", "--verify", "--quiet", "HEAD")
        return result.stdout.strip() if result.returncode == 0 else None


def app_from_git_url(url: str) -> str | None:
    """The app a waka git URL points at: ``http://host:port/<app>.git`` -> ``<app>``."""
    path = urlsplit(url).path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if not last.endswith(".git"):
        return None
    name = last.removesuffix(".git")
    return name or None


def url_base(url: str) -> str:
    """``scheme://host:port`` of a URL: git matches credential settings by this prefix."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise CliError(f"the git URL {url!r} is not an absolute URL")
    return f"{parts.scheme}://{parts.netloc}"
