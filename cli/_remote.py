"""``waka git:remote``: point a git remote at an app so ``git push waka main`` just works.

Besides the remote, the repo's git config gets a credential helper for the controller's URL
that hands git the API token, so pushes never prompt.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._credentials import CREDENTIAL_USERNAME, TOKEN_FILE
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
    """The credential helper setting: a shell snippet that prints the token for `get`.

    git runs its helpers twice per push (`get`, then `store`); starting Python for each costs
    about 150 ms, which is most of a warm deploy's time in git. The snippet applies the same
    rules as `api_token` (``$WAKA_API_KEY``, else the data dir's admin-token) in a few ms.
    ``waka auth:git-credential`` remains for configuring a helper by hand.
    """
    if data_dir_option:
        # git runs the helper from wherever it is, so a relative directory would drift.
        directory = shlex.quote(str(ctx.cwd / Path(data_dir_option).expanduser()))
    else:
        directory = '"${WAKA_DATA_DIR:-$HOME/.local/share/waka}"'
    return (
        '!f() { test "$1" = get || return 0; t="${WAKA_API_KEY:-}"; '
        f'test -n "$t" || t=$(cat {directory}/{TOKEN_FILE} 2>/dev/null); '
        'test -n "$t" || return 0; '
        f'echo username={CREDENTIAL_USERNAME}; echo "password=$t"; }}; f'
    )
