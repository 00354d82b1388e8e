"""``waka nodes`` and the node commands: join tokens, cordon, drain, adopt, remove."""

from __future__ import annotations

import argparse
import re

from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import action, heading, table, write_json
from waka.cli._times import ago, from_timestamp, iso_utc
from waka.v1 import platform_pb2

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise CliError(f'invalid duration "{text}": use e.g. 90s, 15m, 2h or 7d')
    return int(match[1]) * _SECONDS[match[2]]


def node_record(node: platform_pb2.Node) -> dict[str, object]:
    last_seen = from_timestamp(node.last_seen)
    return {
        "name": node.name,
        "id": node.id,
        "address": node.address,
        "state": node.state,
        "dynos": node.dynos,
        "memory_committed_mb": node.memory_committed_mb,
        "memory_total_mb": node.memory_total_mb,
        "memory_free_mb": node.memory_free_mb,
        "cpus": node.cpus,
        "load1": round(node.load1, 2),
        "unknown_dynos": node.unknown_dynos,
        "last_seen": iso_utc(last_seen),
        "isolated": node.isolated,
        "version": node.version,
    }


def list_nodes(args: argparse.Namespace, ctx: Context) -> int:
    with connect(args.data_dir, ctx.environ) as api:
        nodes = api.nodes.List(platform_pb2.Empty()).nodes
    if args.json:
        write_json(ctx.stdout, [node_record(node) for node in nodes])
        return 0
    if not nodes:
        ctx.stdout.write("No nodes have joined yet.\n")
        return 0
    heading(ctx.stdout, "Nodes")
    now = ctx.clock()
    rows = [["Name", "Address", "State", "Dynos", "Memory", "Last seen"]]
    for node in nodes:
        seen = from_timestamp(node.last_seen)
        unknown = f" (+{node.unknown_dynos} unknown)" if node.unknown_dynos else ""
        rows.append(
            [
                node.name,
                node.address,
                node.state,
                f"{node.dynos}{unknown}",
                f"{node.memory_committed_mb}/{node.memory_total_mb} MB",
                ago(seen, now) if seen else "never",
            ]
        )
    table(ctx.stdout, rows)
    return 0


def token(args: argparse.Namespace, ctx: Context) -> int:
    ttl = parse_duration(args.ttl) if args.ttl else 0
    if args.uses < 0:
        raise CliError("--uses cannot be negative")
    with connect(args.data_dir, ctx.environ) as api:
        reply = api.nodes.CreateJoinToken(
            platform_pb2.JoinTokenRequest(ttl_seconds=ttl, uses=args.uses)
        )
    if args.json:
        expires = from_timestamp(reply.expires_at) if reply.HasField("expires_at") else None
        write_json(
            ctx.stdout,
            {"token": reply.token, "expires_at": iso_utc(expires), "uses": reply.uses},
        )
        return 0
    ctx.stdout.write(f"{reply.token}\n")
    limits = []
    if ttl:
        limits.append(f"expires in {args.ttl}")
    if args.uses:
        limits.append(f"{args.uses} use{'s' if args.uses != 1 else ''}")
    ctx.stderr.write(
        "Join with: waka agent --controller HOST:PORT --join-token TOKEN --data-dir DIR"
        + (f" ({', '.join(limits)})" if limits else "")
        + "\n"
    )
    return 0


def _admin(verb: str, method: str):
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        with (
            connect(args.data_dir, ctx.environ) as api,
            action(ctx.stdout, f"{verb} node {args.name}") as outcome,
        ):
            node = getattr(api.nodes, method)(platform_pb2.NodeRef(name=args.name))
            if isinstance(node, platform_pb2.Node):
                outcome.detail = f"now {node.state}"
        return 0

    return handler


cordon = _admin("Cordoning", "Cordon")
uncordon = _admin("Uncordoning", "Uncordon")
drain = _admin("Draining", "Drain")
adopt = _admin("Adopting the dynos of", "Adopt")


def remove(args: argparse.Namespace, ctx: Context) -> int:
    if args.confirm != args.name:
        raise CliError(
            f"Removing node {args.name} stops its dynos: re-run with --confirm {args.name}"
        )
    with (
        connect(args.data_dir, ctx.environ) as api,
        action(ctx.stdout, f"Removing node {args.name}"),
    ):
        api.nodes.Remove(platform_pb2.NodeRef(name=args.name))
    return 0
