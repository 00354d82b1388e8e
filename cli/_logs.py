"""``waka logs``: history and (with ``-t``) the live stream of an app's log lines."""

from __future__ import annotations

import argparse
import json
import re
import zlib
from contextlib import closing
from datetime import UTC, datetime, timedelta

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._records import log_record
from waka.cli._times import log_stamp
from waka.v1 import common_pb2, platform_pb2

# Red, green, yellow, blue, magenta, cyan and their bright forms: readable on dark and light.
PALETTE = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
RESET = "\x1b[0m"


def logs(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    if args.num < 0:
        raise CliError(f"--num must be 0 (the default, 100) or more, not {args.num}")
    colour = wants_colour(ctx, args.no_color) and not args.json
    now = ctx.clock()
    request = platform_pb2.TailRequest(
        app=app,
        num=args.num,
        follow=args.tail,
        source=args.source,
        dyno=args.dyno,
        since_us=parse_moment(args.since, now, "--since") if args.since else 0,
        until_us=parse_moment(args.until, now, "--until") if args.until else 0,
    )
    try:
        with connect(args.data_dir, ctx.environ) as api, closing(api.logs.Tail(request)) as tail:
            for batch in tail:
                for line in batch.lines:
                    text = json.dumps(log_record(line)) if args.json else render(line, colour)
                    ctx.stdout.write(text + "\n")
                ctx.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C is how a tail ends.
        return 0
    return 0


_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, now: datetime, option: str) -> int:
    """``2h``, ``30m``, ``7d`` (ago) or an ISO 8601 time -> microseconds since the epoch."""
    value = text.strip()
    match = _AGO.match(value)
    if match:
        moment = now - timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CliError(
                f'invalid {option} "{text}": use a duration like 30m, 2h, 7d or an ISO 8601 time'
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def render(line: common_pb2.LogLine, colour: bool) -> str:
    """``2026-11-26T03:01:28.791299+00:00 app[web.1]: message``."""
    prefix = f"{line.source}[{line.dyno}]:"
    if colour:
        prefix = f"\x1b[{dyno_colour(line.dyno)}m{prefix}{RESET}"
    return f"{log_stamp(line.time_us)} {prefix} {line.text}"


def dyno_colour(dyno: str) -> int:
    """The same ANSI colour for a dyno name on every run (unlike ``hash``, crc32 is stable)."""
    return PALETTE[zlib.crc32(dyno.encode()) % len(PALETTE)]


def wants_colour(ctx: Context, no_color_option: bool) -> bool:
    if no_color_option or "NO_COLOR" in ctx.environ or ctx.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(ctx.stdout, "isatty", None)
    return bool(isatty and isatty())
