"""`waka up`, `waka server` and `waka agent`: the daemons. The one module importing both sides.

Ctrl-C or SIGTERM stops cleanly: the agent stops its dynos first (SIGTERM, then SIGKILL after the
grace period), then the controller stops serving and closes its database. A second Ctrl-C during
that exits at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from waka.agent import Agent, AgentConfig, AgentError
from waka.controller import BuildLimits, ControllerConfig, run_controller, trusted_networks

DEFAULT_API = "127.0.0.1:7400"
DEFAULT_HTTP = "127.0.0.1:7401"
DEFAULT_ROUTER = "127.0.0.1:7402"
DEFAULT_AGENT_API = "127.0.0.1:7403"


def default_data_dir() -> Path:
    env = os.environ.get("WAKA_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "waka"


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where state lives (default: $WAKA_DATA_DIR or ~/.local/share/waka)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")


def _controller_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", default=DEFAULT_API, help=f"gRPC API address (default {DEFAULT_API})"
    )
    parser.add_argument(
        "--http", default=DEFAULT_HTTP, help=f"git/HTTP endpoint address (default {DEFAULT_HTTP})"
    )
    parser.add_argument(
        "--router", default=DEFAULT_ROUTER, help=f"HTTP router address (default {DEFAULT_ROUTER})"
    )
    parser.add_argument(
        "--agent-api",
        default=DEFAULT_AGENT_API,
        help=f"agents' mutual-TLS address (default {DEFAULT_AGENT_API}; 0.0.0.0:7403 for a fleet)",
    )
    parser.add_argument(
        "--domain",
        default="localhost",
        help="apps are served at APP.DOMAIN (default localhost; homelabs use a wildcard DNS name)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        type=_network,
        default=[],
        metavar="CIDR",
        help="a proxy in front of the router (e.g. a TLS terminator at 127.0.0.1) whose"
        " X-Forwarded-Proto and X-Forwarded-Port the apps get; repeatable",
    )
    parser.add_argument("--public-host", default="", help="host name to put in git URLs")
    parser.add_argument(
        "--stop-grace",
        type=int,
        default=30,
        help="seconds between SIGTERM and SIGKILL when dynos stop (default 30)",
    )
    parser.add_argument(
        "--boot-timeout",
        type=int,
        default=60,
        help="seconds a web dyno has to accept connections on $PORT before R10 (default 60)",
    )
    parser.add_argument(
        "--build-timeout",
        type=float,
        default=15 * 60,
        help="seconds a build may take (default 900)",
    )
    parser.add_argument(
        "--slug-max-mb",
        type=int,
        default=500,
        help="refuse slugs larger than this, in MB (default 500; a warning at 60%%)",
    )
    parser.add_argument(
        "--keep-releases",
        type=int,
        default=10,
        help="each app keeps the slugs of this many newest releases for rollback (default 10)",
    )
    parser.add_argument(
        "--grpc-workers",
        type=_grpc_workers,
        default=ControllerConfig.grpc_workers,
        help="threads for gRPC calls, made as needed; each agent holds 2 (default %(default)s)",
    )
    parser.add_argument(
        "--release-timeout",
        type=float,
        default=3600,
        help="seconds a release command may run before the release fails (default 3600)",
    )


def _network(text: str) -> str:
    try:
        trusted_networks([text])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _grpc_workers(text: str) -> int:
    # The server keeps 8 of them in reserve, so fewer than 16 could serve almost nothing.
    if not text.isdigit() or int(text) < 16:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 16")
    return int(text)


def _agent_config(
    args: argparse.Namespace, data_dir: Path, controller: str, token: str, **more: float
) -> AgentConfig:
    """The agent's configuration from the options `_agent_options` added, and the rest."""
    return AgentConfig(
        data_dir=data_dir,
        controller=controller,
        join_token=token,
        name=args.name,
        address=args.address,
        allow_unisolated=args.allow_unisolated,
        max_starting=args.max_starting,
        **more,
    )


def _non_negative(convert: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 0")
        return value

    return parse


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-starting",
        type=_non_negative(int),
        default=0,
        help="dynos booting at once on this node (default: four per CPU, at least four)",
    )
    parser.add_argument("--name", default="", help="node name (default: the host name)")
    parser.add_argument(
        "--address", default="", help="address other hosts use to reach this node's dynos"
    )
    parser.add_argument(
        "--allow-unisolated",
        action="store_true",
        help="development only: run dynos as plain processes when sandboxes are unavailable",
    )


Stop = Callable[[], Awaitable[None]]


async def _until_signalled(work: Callable[[trio.Nursery], Awaitable[Stop]]) -> None:
    """Runs `work` (which starts things and returns a graceful-stop function) until a signal."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            stop = await work(nursery)
            async for _ in signals:
                break
        print("\nwaka: stopping (Ctrl-C again to exit at once)...", file=sys.stderr, flush=True)
        await stop()
        nursery.cancel_scope.cancel()


async def _start_agent(nursery: trio.Nursery, config: AgentConfig, *, leave: bool) -> Stop:
    """Starts an agent; the returned stop is the deliberate one (its dynos stop too, after the
    controller moved them elsewhere when `leave`). An agent that dies of an error instead leaves
    its dynos running for the next agent to adopt."""
    agent = Agent(config)
    scope = trio.CancelScope()
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                await agent.run(task_status=task_status)
        finally:
            done.set()

    await nursery.start(run)

    async def stop() -> None:
        if leave:
            await agent.leave()
        agent.stop_dynos_on_exit()
        scope.cancel()
        await done.wait()

    return stop


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _run(main: Callable[[], Awaitable[None]]) -> int:
    try:
        trio.run(main)
    except BaseException as error:
        leaves = _leaves(error)
        if all(isinstance(e, KeyboardInterrupt) for e in leaves):
            return 130
        if all(isinstance(e, AgentError | OSError | ValueError) for e in leaves):
            for leaf in leaves:
                print(f"error: {leaf}", file=sys.stderr)
            return 1
        raise
    return 0


def up(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="waka up", description="Run the controller and one agent in this process."
    )
    _common(parser)
    _controller_options(parser)
    _agent_options(parser)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()

    async def start(nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        running = await nursery.start(
            run_controller,
            _controller_config(args, data_dir),
        )
        stop = await _start_agent(
            nursery,
            _agent_config(args, data_dir / "agent", running.api, running.join_token),
            # The whole platform stops here: there is nowhere to move its dynos to.
            leave=False,
        )
        print(
            f"waka is up.\n"
            f"  API   {running.api}\n"
            f"  git   http://{running.http}/APP.git\n"
            f"  apps  http://APP.{args.domain}:{running.router.rpartition(':')[2]}/\n"
            f"  data  {data_dir}\n"
            f"In another shell: waka apps:create hello",
            flush=True,
        )

        return stop

    return _run(lambda: _until_signalled(start))


def _controller_config(args: argparse.Namespace, data_dir: Path) -> ControllerConfig:
    return ControllerConfig(
        data_dir=data_dir,
        api=args.api,
        http=args.http,
        router=args.router,
        agent_api=args.agent_api,
        domain=args.domain,
        trusted_proxies=tuple(args.trusted_proxy),
        public_host=args.public_host,
        stop_grace_seconds=args.stop_grace,
        boot_timeout_seconds=args.boot_timeout,
        release_timeout=args.release_timeout,
        build_timeout=args.build_timeout,
        keep_releases=args.keep_releases,
        grpc_workers=args.grpc_workers,
        build_limits=BuildLimits(
            slug_warn_bytes=args.slug_max_mb * 600_000,
            slug_max_bytes=args.slug_max_mb * 1_000_000,
        ),
    )


def server(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="waka server", description="Run only the controller.")
    _common(parser)
    _controller_options(parser)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()

    async def start(nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        running = await nursery.start(
            run_controller,
            _controller_config(args, data_dir),
        )
        print(
            f"waka controller is up: API {running.api}, git http://{running.http}/APP.git\n"
            f"Agents join with: waka agent --controller {running.api} --token "
            f"$(cat {data_dir / 'join-token'}) --data-dir DIR",
            flush=True,
        )

        async def stop() -> None:
            return None

        return stop

    return _run(lambda: _until_signalled(start))


def agent(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="waka agent", description="Run only an agent.")
    _common(parser)
    _agent_options(parser)
    parser.add_argument("--controller", required=True, help="the controller's API HOST:PORT")
    parser.add_argument(
        "--token",
        "--join-token",
        dest="token",
        default=os.environ.get("WAKA_JOIN_TOKEN", ""),
        help="join token (needed the first time; the controller's data dir has join-token)",
    )
    parser.add_argument(
        "--leave-timeout",
        type=_non_negative(float),
        default=AgentConfig.leave_timeout,
        help="on SIGTERM, seconds to wait for this node's dynos to move to other nodes before"
        " stopping them (default %(default)s)",
    )
    parser.add_argument(
        "--fence-after",
        type=_non_negative(float),
        default=0.0,
        help="stop this node's dynos once the controller has been out of reach this many seconds,"
        " for apps that must never run twice (default: never)",
    )
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    data_dir = (args.data_dir or default_data_dir() / "agent").expanduser().resolve()

    async def start(nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        stop = await _start_agent(
            nursery,
            _agent_config(
                args,
                data_dir,
                args.controller,
                args.token,
                leave_timeout=args.leave_timeout,
                fence_after=args.fence_after,
            ),
            leave=True,
        )
        print(f"waka agent is up, controller {args.controller}, data {data_dir}", flush=True)
        return stop

    return _run(lambda: _until_signalled(start))
