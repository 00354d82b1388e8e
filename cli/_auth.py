"""``waka auth:token`` and ``waka auth:git-credential`` (git's credential helper protocol).

git runs the helper on every push and fetch, so this module, like ``_credentials``, must not
import grpc or the generated modules.
"""

from __future__ import annotations

import argparse

from waka.cli._context import Context
from waka.cli._credentials import CREDENTIAL_USERNAME, api_token, data_dir


def token(args: argparse.Namespace, ctx: Context) -> int:
    ctx.stdout.write(api_token(data_dir(args.data_dir, ctx.environ), ctx.environ) + "\n")
    return 0


def git_credential(args: argparse.Namespace, ctx: Context) -> int:
    # git describes the request as `key=value` lines ended by a blank line or EOF; it must be
    # read in full even when unused, or git may get SIGPIPE writing it.
    _read_request(ctx)
    if args.operation != "get":
        # `store` and `erase`: the token lives in the data dir, not in git's care; any other
        # operation is one a newer git added, which the protocol says to ignore.
        return 0
    password = api_token(data_dir(args.data_dir, ctx.environ), ctx.environ)
    ctx.stdout.write(f"username={CREDENTIAL_USERNAME}\npassword={password}\n")
    return 0


def _read_request(ctx: Context) -> dict[str, str]:
    request: dict[str, str] = {}
    for line in ctx.stdin:
        text = line.rstrip("\n")
        if not text:
            break
        key, _, value = text.partition("=")
        request[key] = value
    return request
