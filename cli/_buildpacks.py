"""``waka buildpacks`` and ``buildpacks:set|add|remove|clear``, with Heroku's index rules."""

from __future__ import annotations

import argparse

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import app_label, heading, write_json
from waka.v1 import platform_pb2


def edit(
    current: list[str], *, op: str, buildpack: str = "", index: int | None = None
) -> list[str]:
    """The new list after one of Heroku's buildpack edits (indexes count from 1)."""
    result = list(current)
    if op == "clear":
        return []
    if op == "remove":
        if index is not None:
            if not 1 <= index <= len(result):
                raise CliError(f"there is no buildpack at index {index}")
            del result[index - 1]
            return result
        if buildpack not in result:
            raise CliError(f"{buildpack} is not among the app's buildpacks")
        result.remove(buildpack)
        return result
    if buildpack in result:
        raise CliError(f"{buildpack} is already one of the app's buildpacks")
    if op == "set":
        position = index or 1
        if not 1 <= position <= len(result) + 1:
            raise CliError(f"index {position} is out of range (1 to {len(result) + 1})")
        if position <= len(result):
            result[position - 1] = buildpack
        else:
            result.append(buildpack)
        return result
    if op == "add":
        position = index if index is not None else len(result) + 1
        if not 1 <= position <= len(result) + 1:
            raise CliError(f"index {position} is out of range (1 to {len(result) + 1})")
        result.insert(position - 1, buildpack)
        return result
    raise AssertionError(op)


def _show(ctx: Context, app: str, buildpacks: list[str], as_json: bool) -> None:
    if as_json:
        write_json(ctx.stdout, buildpacks)
        return
    if not buildpacks:
        ctx.stdout.write(f"{app_label(app)} has no buildpacks set: they are detected at build\n")
        return
    heading(ctx.stdout, f"{app} Buildpack{'s' if len(buildpacks) > 1 else ''}")
    for i, buildpack in enumerate(buildpacks, 1):
        ctx.stdout.write(f"{i}. {buildpack}\n" if len(buildpacks) > 1 else f"{buildpack}\n")


def list_buildpacks(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    with connect(args.data_dir, ctx.environ) as api:
        buildpacks = list(api.buildpacks.List(platform_pb2.AppRef(app=app)).buildpacks)
    _show(ctx, app, buildpacks, args.json)
    return 0


def _change(op: str):
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        app = resolve_app(args.app, ctx)
        with connect(args.data_dir, ctx.environ) as api:
            current = list(api.buildpacks.List(platform_pb2.AppRef(app=app)).buildpacks)
            new = edit(
                current,
                op=op,
                buildpack=getattr(args, "buildpack", "") or "",
                index=getattr(args, "index", None),
            )
            saved = api.buildpacks.Set(platform_pb2.BuildpackList(app=app, buildpacks=new))
        ctx.stdout.write(
            "Buildpacks updated. Next release on " + app_label(app) + " will use them.\n"
        )
        _show(ctx, app, list(saved.buildpacks), False)
        return 0

    return handler


set_buildpack = _change("set")
add = _change("add")
remove = _change("remove")
clear = _change("clear")
