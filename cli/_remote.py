"""``waka git:remote``: point a git remote at an app so ``git push waka main`` just works.

Besides the remote, the repo's git config gets a credential helper for the controller's URL
that runs this same waka (``waka auth:git-credential``), so pushes never prompt.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._credentials import CREDENTIAL_USERNAME
from waka.cli._errors import CliError
from waka.cli._git import Git, url_base
from waka.v1 import platform_pb2


def git_remote(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    git = Git(ctx.cwd, ctx.environ)
    if not git.is_repository():
        raise CliError(f"{ctx.cwd} is not inside a git repository (run `git init` first)")
    with connect(args.data_dir, ctx.environ) as api:
        record = api.apps.Get(platform_pb2.AppRef(app=app))
    configure_remote(git, args.remote, record.git_url, helper_command(ctx, args.data_dir))
    ctx.stdout.write(f"set git remote {args.remote} to {record.git_url}\n")
    return 0


def configure_remote(git: Git, remote: str, git_url: str, helper: str) -> None:
    """Add or update ``remote`` and make git ask ``helper`` for the password of its host."""
    if not git_url:
        raise CliError("the controller did not say where the app's git repository is")
    base = url_base(git_url)
    git.set_remote(remote, git_url)
    git.set_config(f"credential.{base}.helper", helper)
    git.set_config(f"credential.{base}.username", CREDENTIAL_USERNAME)


def helper_command(ctx: Context, data_dir_option: str | None) -> str:
    """The credential helper setting: this waka, with the data dir it was told to use.

    git runs helpers through the shell, taking an absolute path as is and a string starting
    with ``!`` as a shell snippet; a path that needs quoting must therefore use the ``!`` form.
    """
    words = list(ctx.self_command)
    if data_dir_option:
        # git runs the helper from wherever it is, so a relative directory would drift.
        words += ["--data-dir", str(ctx.cwd / Path(data_dir_option).expanduser())]
    words.append("auth:git-credential")
    command = shlex.join(words)
    return command if command.startswith("/") else f"!{command}"
