"""The command line: every command, its options, and the handler that runs it.

Handlers are named as ``module:function`` and imported only when their command runs, so
``waka --help`` and ``waka auth:git-credential`` never load grpc or the generated modules.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, NoReturn, TextIO

from waka.cli._errors import UsageError

Handler = Callable[..., int]

# argparse's own wording lists every command; one line pointing at `waka help` reads better.
_UNKNOWN_COMMAND = re.compile(r"argument COMMAND: invalid choice: '([^']*)'")


class ParserExit(Exception):
    """argparse finished the command line by itself (``--help``): exit with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser that writes to the command's streams and raises instead of exiting."""

    def __init__(self, *args: Any, out: TextIO, err: TextIO, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._out = out
        self._err = err
        # Each command's own parser by name and alias, so its errors show its own usage.
        self.command_parsers: dict[str, CliParser] = {}

    def parse_command_line(self, argv: list[str]) -> argparse.Namespace:
        args, extras = self.parse_known_args(argv)
        if extras:
            # argparse would blame the top-level parser; the command's usage is more helpful.
            owner = self.command_parsers.get(getattr(args, "command", None) or "", self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return args

    def error(self, message: str) -> NoReturn:
        unknown = _UNKNOWN_COMMAND.match(message)
        if unknown:
            message = f'"{unknown[1]}" is not a waka command; "waka help" lists them'
        raise UsageError(message, self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._err.write(message)
        raise ParserExit(status)

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        if message:
            (self._err if file is sys.stderr else self._out).write(message)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    # `module:function` inside waka.cli; the function takes (args, ctx) and returns the exit status.
    handler: str
    arguments: Callable[[argparse.ArgumentParser], None]
    aliases: tuple[str, ...] = ()


def load_handler(reference: str) -> Handler:
    module_name, function = reference.split(":")
    module = importlib.import_module(f"waka.cli.{module_name}")
    handler: Handler = getattr(module, function)
    return handler


# ---------------------------------------------------------------- options shared by commands


def _app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--app", metavar="APP", help='the app (default: the app of the "waka" git remote)'
    )


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="output as JSON")


def _app_json(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    _json(parser)


# ---------------------------------------------------------------- each command's options


def _apps_rename(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("new_name", metavar="NEWNAME", help="2 to 30 lowercase letters, digits, -")
    _app(parser)


def _apps_open(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("path", nargs="?", default="", metavar="PATH", help="e.g. /admin")


def _apps_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default="", metavar="NAME", help="default: random")
    parser.add_argument(
        "--no-remote", action="store_true", help='do not add a "waka" git remote to this repo'
    )
    parser.add_argument("-r", "--remote", default="waka", help="name of the git remote to add")


def _apps_destroy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="app to destroy")
    _app(parser)
    parser.add_argument("--confirm", metavar="NAME", help="the app's name again, to proceed")


def _git_remote(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("-r", "--remote", default="waka", help='remote name (default: "waka")')


def _git_credential(parser: argparse.ArgumentParser) -> None:
    # Not limited to get/store/erase: git's protocol says other operations are ignored silently.
    parser.add_argument("operation", metavar="get|store|erase", help="git's request")


def _deploy(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "source", nargs="?", default=".", metavar="DIR_OR_TARBALL", help="default: ."
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail instead of waiting when the app is already building (git: push -o no-wait)",
    )


def _ps_scale(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "changes",
        nargs="*",
        metavar="TYPE=N",
        help="web=2, web+1, worker-1, web=2:standard-2x, web=standard-2x (none: show)",
    )


def _ps_restart(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "target", nargs="?", default="", metavar="TYPE|DYNO", help="web or web.1 (default: all)"
    )


def _releases(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument(
        "-n", "--num", type=int, default=15, metavar="N", help="how many releases (default 15)"
    )


def _releases_info(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument("version", nargs="?", metavar="vN", help="default: the current release")


def _config(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument("--shell", action="store_true", help="output as KEY=value lines")


def _config_get(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("key", metavar="KEY")


def _config_set(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("assignments", nargs="+", metavar="KEY=value")


def _config_unset(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("keys", nargs="+", metavar="KEY")


def _logs(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument(
        "-n", "--num", type=int, default=0, metavar="N", help="history lines (default 100)"
    )
    parser.add_argument("-t", "--tail", action="store_true", help="keep streaming new lines")
    parser.add_argument("-s", "--source", default="", help="only this source (app, waka, ...)")
    parser.add_argument(
        "-d",
        "--dyno",
        "-p",  # Heroku's older spelling, still in many a runbook
        "--ps",
        default="",
        help="only this dyno or type (web.1, web, router)",
    )
    parser.add_argument("--no-color", action="store_true", help="never colour the output")
    parser.add_argument(
        "--since", default="", help="only lines since: 30m, 2h, 7d ago or an ISO 8601 time"
    )
    parser.add_argument("--until", default="", help="only lines before: 30m, 2h ago or ISO 8601")


def _builds_info(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument("build_id", metavar="ID")


def _rollback(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "version", nargs="?", metavar="vN", help="default: the release before the current one"
    )


def _releases_output(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("version", nargs="?", metavar="vN", help="default: the current release")


def _ps_stop(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("dyno", metavar="DYNO", help="web.1, run.3")


def _ps_resize(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("changes", nargs="+", metavar="TYPE=SIZE", help="web=standard-2x")


def _dotenv_file(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("file", nargs="?", default=".env", metavar="FILE", help="default: .env")


def _config_pull(parser: argparse.ArgumentParser) -> None:
    _dotenv_file(parser)
    parser.add_argument(
        "-o", "--overwrite", action="store_true", help="replace values already in the file"
    )


def _run(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("-s", "--size", default="", help="dyno size (default: standard-1x)")
    parser.add_argument(
        "-e", "--env", default="", metavar="K=V;K2=V2", help="extra environment variables"
    )
    _attached_command(parser)


def _ps_exec(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "-d", "--dyno", default="web.1", metavar="DYNO", help="the running dyno (default: web.1)"
    )
    _attached_command(parser)


def _attached_command(parser: argparse.ArgumentParser) -> None:
    """A command run with this terminal (`run`, `ps:exec`)."""
    parser.add_argument(
        "--no-tty", action="store_true", help="no terminal: pipes for stdin and output"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _ps_wait(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("-t", "--type", default="", metavar="TYPE", help="only this process type")
    parser.add_argument("-R", "--with-run", action="store_true", help="one-off dynos too")
    parser.add_argument(
        "-w",
        "--wait-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look (default: 2)",
    )


def _ps_copy(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("file", metavar="FILE", help="a path in the dyno (relative to /app)")
    parser.add_argument(
        "-d", "--dyno", default="web.1", metavar="DYNO", help="the running dyno (default: web.1)"
    )
    parser.add_argument("-o", "--output", default="", metavar="LOCAL", help="default: FILE's name")
    parser.add_argument("--force", action="store_true", help="overwrite LOCAL if it exists")


def _config_edit(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("-y", "--yes", action="store_true", help="apply without asking")


def _local(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "processes",
        nargs="*",
        metavar="TYPE",
        help="types to run (`web worker`, or `web=1,worker=2`); default: all but release",
    )
    parser.add_argument("-f", "--procfile", default="Procfile", metavar="FILE")
    parser.add_argument("-e", "--env", default=".env", metavar="FILE", help="default: .env")
    parser.add_argument("-p", "--port", type=int, metavar="PORT", help="the first PORT (5000)")


def _local_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--env", default=".env", metavar="FILE", help="default: .env")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _run_detached(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("-s", "--size", default="", help="dyno size (default: standard-1x)")
    parser.add_argument(
        "-e", "--env", default="", metavar="K=V;K2=V2", help="extra environment variables"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _node_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NODE", help="the node's name (see `waka nodes`)")


def _nodes_remove(parser: argparse.ArgumentParser) -> None:
    _node_name(parser)
    parser.add_argument("--confirm", metavar="NODE", help="the node's name again, to proceed")


def _nodes_token(parser: argparse.ArgumentParser) -> None:
    _json(parser)
    parser.add_argument("--ttl", default="", help="lifetime, e.g. 15m, 2h, 7d (default: forever)")
    parser.add_argument(
        "--uses", type=int, default=0, help="how many agents may join with it (default: any)"
    )


def _hostname(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("hostname", metavar="HOSTNAME", help="e.g. www.example.home.lan")


def _buildpack_edit(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("buildpack", metavar="BUILDPACK", help="name, absolute path or git URL")
    parser.add_argument("-i", "--index", type=int, default=None, help="position (from 1)")


def _buildpack_remove(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("buildpack", nargs="?", default="", metavar="BUILDPACK")
    parser.add_argument("-i", "--index", type=int, default=None, help="position (from 1)")


def _build_id_optional(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "build_id", nargs="?", default="", metavar="ID", help="default: the running one"
    )


def _build_id(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("build_id", metavar="ID")


def _gc(parser: argparse.ArgumentParser) -> None:
    _json(parser)
    parser.add_argument(
        "--now", action="store_true", help="skip the grace periods for recent builds and files"
    )


def _drain_url(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("url", metavar="URL", help="syslog://, syslog+tls://, https:// or http://")


def _feature_name(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("feature", metavar="FEATURE", help="preboot or private-network")


def _help(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="COMMAND")


def _addons_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--app", metavar="APP", help="only the add-ons of this app")
    _json(parser)


def _addon_as(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as", dest="as_name", default="", metavar="NAME", help="attachment name (NAME_URL)"
    )


def _addons_create(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument("service", metavar="SERVICE[:PLAN]", help="postgresql, redis")
    _addon_as(parser)
    parser.add_argument("--plan", default="", help="see `waka addons:services`")
    parser.add_argument("--node", default="", help="the node to run it on (default: placement)")


def _addon_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="ADDON", help="add-on name (or attachment name with -a)")


def _addons_info(parser: argparse.ArgumentParser) -> None:
    _addon_name(parser)
    _app_json(parser)


def _addons_attach(parser: argparse.ArgumentParser) -> None:
    _addons_info(parser)
    _addon_as(parser)


def _addons_destroy(parser: argparse.ArgumentParser) -> None:
    _addon_name(parser)
    _json(parser)
    parser.add_argument("--confirm", metavar="APP", help="the add-on's app, to proceed")


def _addon_servers_add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE", help="postgresql")
    parser.add_argument("url", metavar="URL", help="postgres://admin[:password]@host[:port]/")
    parser.add_argument("--name", default="", help="default: the URL's host")


def _addon_server_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="see `waka addons:servers`")


def _addon_console(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "database", nargs="?", default="", metavar="DATABASE", help="attachment or add-on name"
    )
    parser.add_argument(
        "--no-tty", action="store_true", help="no terminal: pipes for stdin and output"
    )


def _pg_info(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument(
        "database", nargs="?", default="", metavar="DATABASE", help="attachment or add-on name"
    )


def _pg_psql(parser: argparse.ArgumentParser) -> None:
    _addon_console(parser)
    parser.add_argument("-c", "--command", default="", help="run this SQL and exit")


def _pg_backups_capture(parser: argparse.ArgumentParser) -> None:
    _app_json(parser)
    parser.add_argument(
        "database", nargs="?", default="", metavar="DATABASE", help="default: DATABASE"
    )


def _pg_backups_restore(parser: argparse.ArgumentParser) -> None:
    _app(parser)
    parser.add_argument("backup_id", metavar="ID", help="b001 (see `waka pg:backups`)")
    parser.add_argument(
        "database", nargs="?", default="", metavar="DATABASE", help="default: DATABASE"
    )
    parser.add_argument("--confirm", metavar="APP", help="the app's name again, to proceed")


def _pg_backups_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup_id", metavar="ID", help="b001 (see `waka pg:backups`)")
    parser.add_argument("-o", "--output", default="", metavar="FILE", help="default: ID.dump")


def _nothing(parser: argparse.ArgumentParser) -> None:
    del parser


COMMANDS: tuple[Command, ...] = (
    Command("apps", "list your apps", "_apps:list_apps", _json),
    Command("apps:create", "create an app", "_apps:create", _apps_create, ("create",)),
    Command("apps:info", "show an app's details", "_apps:info", _app_json, ("info",)),
    Command("apps:rename", "give an app a new name", "_apps:rename", _apps_rename, ("rename",)),
    Command("apps:open", "open the app in a browser", "_apps:open_app", _apps_open, ("open",)),
    Command("apps:destroy", "destroy an app", "_apps:destroy", _apps_destroy, ("destroy",)),
    Command("git:remote", "point a git remote at an app", "_remote:git_remote", _git_remote),
    Command("deploy", "build and release a directory or tarball", "_deploy:deploy", _deploy),
    Command("builds", "list an app's builds", "_builds:list_builds", _app_json),
    Command("builds:info", "show one build", "_builds:info", _builds_info),
    Command("builds:output", "show a build's output", "_builds:output", _build_id),
    Command("builds:cancel", "stop a running build", "_builds:cancel", _build_id_optional),
    Command("builds:cache:purge", "empty an app's build cache", "_builds:purge_cache", _app),
    Command(
        "gc", "delete slugs and sources nothing needs any more", "_builds:collect_garbage", _gc
    ),
    Command("buildpacks", "list an app's buildpacks", "_buildpacks:list_buildpacks", _app_json),
    Command("buildpacks:set", "set a buildpack", "_buildpacks:set_buildpack", _buildpack_edit),
    Command("buildpacks:add", "add a buildpack", "_buildpacks:add", _buildpack_edit),
    Command("buildpacks:remove", "remove a buildpack", "_buildpacks:remove", _buildpack_remove),
    Command("buildpacks:clear", "go back to detection", "_buildpacks:clear", _app),
    Command("releases", "list an app's releases", "_releases:list_releases", _releases),
    Command("releases:info", "show one release", "_releases:info", _releases_info),
    Command(
        "releases:output",
        "show a release's release-phase output",
        "_releases:output",
        _releases_output,
    ),
    Command(
        "rollback",
        "roll back to an earlier release",
        "_releases:rollback",
        _rollback,
        ("releases:rollback",),
    ),
    Command(
        "releases:retry",
        "run the latest release's release phase again",
        "_releases:retry",
        _app,
    ),
    Command("ps", "list an app's dynos", "_ps:ps", _app_json),
    Command("ps:scale", "scale process types", "_ps:scale", _ps_scale, ("scale",)),
    Command("ps:restart", "restart dynos", "_ps:restart", _ps_restart, ("restart",)),
    Command("ps:stop", "stop a dyno", "_ps:stop", _ps_stop, ("stop", "ps:kill")),
    Command("ps:type", "change process types' dyno size", "_ps:resize", _ps_resize, ("ps:resize",)),
    Command("ps:wait", "wait until every dyno runs the current release", "_ps:wait", _ps_wait),
    Command("ps:copy", "copy a file from a running dyno", "_run:copy_from_dyno", _ps_copy),
    Command("ps:exec", "a shell (or COMMAND) inside a running dyno", "_run:exec_in_dyno", _ps_exec),
    Command("run", "run a one-off dyno attached to this terminal", "_run:run", _run),
    Command(
        "run:detached",
        "run a one-off dyno; its output goes to the logs",
        "_run:detached",
        _run_detached,
    ),
    Command("local", "run the Procfile on this machine, with .env", "_local:local", _local),
    Command("local:run", "run a command with the app's .env", "_local:local_run", _local_run),
    Command("config", "show an app's config vars", "_config:show", _config),
    Command("config:get", "print one config var", "_config:get", _config_get),
    Command("config:set", "set config vars and restart", "_config:set_vars", _config_set),
    Command("config:unset", "remove config vars and restart", "_config:unset", _config_unset),
    Command("config:push", "set config vars from a .env file", "_config:push", _dotenv_file),
    Command("config:pull", "write config vars to a .env file", "_config:pull", _config_pull),
    Command("config:edit", "edit config vars in $EDITOR", "_config:edit", _config_edit),
    Command("logs", "show (and -t: tail) an app's logs", "_logs:logs", _logs),
    Command("drains", "list an app's log drains", "_drains:list_drains", _app_json),
    Command("drains:add", "forward an app's logs to a URL", "_drains:add", _drain_url),
    Command(
        "drains:remove", "stop forwarding to a drain (URL or token)", "_drains:remove", _drain_url
    ),
    Command("domains", "list an app's domains", "_domains:list_domains", _app_json),
    Command("domains:add", "add a custom domain to an app", "_domains:add", _hostname),
    Command("domains:remove", "remove a custom domain", "_domains:remove", _hostname),
    Command("maintenance", "show whether maintenance mode is on", "_domains:maintenance", _app),
    Command("maintenance:on", "serve a maintenance page", "_domains:maintenance_on", _app),
    Command("maintenance:off", "serve the app again", "_domains:maintenance_off", _app),
    Command("features", "list an app's features", "_domains:features", _app_json),
    Command("features:enable", "turn an app feature on", "_domains:enable_feature", _feature_name),
    Command(
        "features:disable", "turn an app feature off", "_domains:disable_feature", _feature_name
    ),
    Command("nodes", "list the nodes", "_nodes:list_nodes", _json),
    Command("nodes:token", "create a join token for agents", "_nodes:token", _nodes_token),
    Command("nodes:cordon", "stop placing new dynos on a node", "_nodes:cordon", _node_name),
    Command("nodes:uncordon", "place dynos on a node again", "_nodes:uncordon", _node_name),
    Command("nodes:drain", "move a node's dynos elsewhere", "_nodes:drain", _node_name),
    Command(
        "nodes:adopt",
        "stop the dynos a node runs that waka does not know",
        "_nodes:adopt",
        _node_name,
    ),
    Command("nodes:remove", "revoke and forget a node", "_nodes:remove", _nodes_remove),
    Command("addons", "list add-ons (of an app with -a)", "_addons:list_addons", _addons_list),
    Command("addons:create", "create an add-on for an app", "_addons:create", _addons_create),
    Command("addons:info", "show an add-on", "_addons:info", _addons_info),
    Command("addons:attach", "attach an add-on to another app", "_addons:attach", _addons_attach),
    Command("addons:detach", "detach an add-on from an app", "_addons:detach", _addons_info),
    Command("addons:destroy", "destroy an add-on and its data", "_addons:destroy", _addons_destroy),
    Command("addons:services", "list add-on services and plans", "_addons:services", _json),
    Command("addons:servers", "list external add-on servers", "_addons:servers", _json),
    Command(
        "addons:servers:add",
        "register an external server for add-ons",
        "_addons:servers_add",
        _addon_servers_add,
    ),
    Command(
        "addons:servers:remove",
        "forget an external add-on server",
        "_addons:servers_remove",
        _addon_server_name,
    ),
    Command("pg:psql", "open psql on an app's database", "_addons:psql", _pg_psql, ("psql",)),
    Command("pg:info", "an app's database: plan, size, connections", "_addons:pg_info", _pg_info),
    Command("redis:cli", "open redis-cli on an app's redis", "_addons:redis_cli", _addon_console),
    Command("pg:backups", "list an app's database backups", "_addons:backups", _app_json),
    Command(
        "pg:backups:capture",
        "back up an app's database",
        "_addons:backups_capture",
        _pg_backups_capture,
    ),
    Command(
        "pg:backups:restore",
        "restore a backup into an app's database",
        "_addons:backups_restore",
        _pg_backups_restore,
    ),
    Command(
        "pg:backups:download",
        "download a backup",
        "_addons:backups_download",
        _pg_backups_download,
    ),
    Command("auth:token", "print the API token", "_auth:token", _nothing),
    Command(
        "auth:git-credential",
        "git credential helper (git runs this)",
        "_auth:git_credential",
        _git_credential,
    ),
    Command("version", "print the version", "_meta:version", _nothing),
    Command("help", "show help for waka or a command", "_meta:help", _help),
)

# Run with their arguments untouched by cli/launcher.py, never parsed here.
LAUNCHERS: dict[str, str] = {
    "up": "start a controller and an agent on this machine",
    "server": "start a controller",
    "agent": "start an agent and join a controller",
}

_DATA_DIR = (
    "where the controller keeps its token and address "
    "(default: $WAKA_DATA_DIR, else ~/.local/share/waka)"
)
DESCRIPTION = "waka: git push your apps to your own machines, Heroku-style."
EPILOG = "\n".join(
    [
        "daemons:",
        *(f"  {name:<24}{summary}" for name, summary in LAUNCHERS.items()),
        "",
        'Run "waka help COMMAND" for a command\'s options. Commands that act on an app take',
        '-a APP; without it, the app of the current repo\'s "waka" git remote is used.',
    ]
)


def build_parser(out: TextIO, err: TextIO) -> CliParser:
    # `--data-dir` is accepted before and after the command; the subcommands' copy is
    # SUPPRESSed so it does not overwrite a value given before the command.
    shared = CliParser(add_help=False, out=out, err=err)
    shared.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS, help=_DATA_DIR)

    parser = CliParser(prog="waka", description=DESCRIPTION, epilog=EPILOG, out=out, err=err)
    parser.add_argument("--data-dir", metavar="DIR", default=None, help=_DATA_DIR)
    parser.add_argument(
        "--version", dest="show_version", action="store_true", help="print the version"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            aliases=list(command.aliases),
            help=command.summary,
            description=command.summary,
            parents=[shared],
            out=out,
            err=err,
        )
        command.arguments(sub)
        sub.set_defaults(handler=command.handler)
        for name in (command.name, *command.aliases):
            parser.command_parsers[name] = sub
    return parser
