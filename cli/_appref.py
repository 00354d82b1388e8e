"""Which app a command is about: ``-a APP``, else the app of the repo's ``waka`` git remote."""

from __future__ import annotations

from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._git import DEFAULT_REMOTE, Git, app_from_git_url

NO_APP_MESSAGE = 'No app specified. Use -a APP, or run inside a repo with a "waka" git remote.'


def resolve_app(option: str | None, ctx: Context) -> str:
    if option:
        return option
    url = Git(ctx.cwd, ctx.environ).remote_url(DEFAULT_REMOTE)
    if url is None:
        raise CliError(NO_APP_MESSAGE)
    app = app_from_git_url(url)
    if app is None:
        raise CliError(
            f'the "{DEFAULT_REMOTE}" git remote ({url}) does not name an app '
            "(expected http://host:port/APP.git); use -a APP"
        )
    return app
