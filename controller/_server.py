"""The controller process: wires the parts together and runs them in one trio nursery."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlite_utils import Database

from waka.controller._addon_api import AddonServices, add_addons_servicer
from waka.controller._addons import build_addons
from waka.controller._agent_api import AgentServices, add_agent_servicer
from waka.controller._agents import Agents, LogIngest
from waka.controller._api import Services, add_platform_servicers
from waka.controller._apps import Apps
from waka.controller._attach import AttachHub
from waka.controller._blobs import BlobStore
from waka.controller._bridge import Bridge, set_stream_readers
from waka.controller._ca import CertificateAuthority
from waka.controller._deploys import BuildLimits, Deployer
from waka.controller._drains import Drains
from waka.controller._exec import Execs
from waka.controller._fleet import Fleet
from waka.controller._formation import Formation
from waka.controller._gc import Collector
from waka.controller._git import GitEndpoint
from waka.controller._liveness import Liveness
from waka.controller._log_drains import LogDrains
from waka.controller._logs import LogHub
from waka.controller._logstore import LogStore
from waka.controller._nodes import Nodes
from waka.controller._oneoff import OneOffs
from waka.controller._reconcile import Reconciler
from waka.controller._releaser import Releaser
from waka.controller._router import Router
from waka.controller._router_table import RoutingTable
from waka.controller._routes import Routes
from waka.controller._store import Store
from waka.controller._tokens import Identity, TokenBook, new_join_token, new_token, token_hash

log = logging.getLogger("waka.controller")


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not a HOST:PORT address")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path
    api: str = "127.0.0.1:7400"
    http: str = "127.0.0.1:7401"
    # Agents' port: mutual TLS with certificates this controller issues when they join.
    agent_api: str = "127.0.0.1:7403"
    # The HTTP router: apps at http://APP.DOMAIN:PORT/.
    router: str = "127.0.0.1:7402"
    domain: str = "localhost"
    # Proxies in front of the router (CIDR) whose X-Forwarded-Proto/Port are passed on.
    trusted_proxies: tuple[str, ...] = ()
    # The host name put into git URLs; defaults to the HTTP bind host.
    public_host: str = ""
    log_history: int = 1500
    build_timeout: float = 15 * 60
    # Threads for RPCs (made as needed). Every agent holds two streams open (its session and its
    # log shipping) for as long as it is connected, so this bounds the fleet: 1000 is ~490 agents
    # plus room for the API. With too few, even `waka apps` is refused (RESOURCE_EXHAUSTED).
    grpc_workers: int = 1000
    resync_interval: float = 5.0
    stop_grace_seconds: int = 30
    boot_timeout_seconds: int = 60
    # Release phase: the longest a release command may run.
    release_timeout: float = 60 * 60
    # Seconds without word from a node before it is suspect, and before its dynos move.
    suspect_after: float = 10.0
    down_after: float = 20.0
    build_limits: BuildLimits = field(default_factory=BuildLimits)
    # Each app keeps the slugs of this many newest releases (that many rollbacks stay possible).
    keep_releases: int = 10
    # Durable log history, per app: lines older than this, or beyond this size, go.
    log_max_age: float = 7 * 24 * 3600
    log_max_bytes_per_app: int = 64 * 1024 * 1024
    # CA certificates trusted for syslog+tls:// and https:// drains, besides the system's.
    drain_ca_file: str | None = None


@dataclass(frozen=True)
class Running:
    """What a started controller tells whoever started it."""

    api: str
    http: str
    router: str
    agent_api: str
    admin_token: str
    join_token: str
    data_dir: Path


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def _bootstrap_tokens(
    store: Store, tokens: TokenBook, data_dir: Path, ca_fingerprint: str
) -> tuple[str, str]:
    """On first start, makes the admin token and a join token, and writes both to the data dir."""
    admin_file, join_file = data_dir / "admin-token", data_dir / "join-token"

    def ensure(db: Database) -> tuple[str, str]:
        now = time.time()
        has_user = db.execute("SELECT 1 FROM tokens WHERE kind = 'user'").fetchone()
        admin = admin_file.read_text().strip() if admin_file.exists() else ""
        if not has_user or not admin:
            admin = new_token("waka")
            TokenBook.insert(db, admin, Identity("user", "admin"), now=now)
            _write_secret(admin_file, admin)
        join = join_file.read_text().strip() if join_file.exists() else ""
        if not join or tokens_missing(db, join) or not join.endswith(ca_fingerprint[:32]):
            join = new_join_token(ca_fingerprint)
            TokenBook.insert(db, join, Identity("join", "cluster"), now=now)
            _write_secret(join_file, join)
        tokens.load(db)
        return admin, join

    return store.write_now(ensure)


def tokens_missing(db: Database, token: str) -> bool:
    return (
        db.execute("SELECT 1 FROM tokens WHERE hash = ?", (token_hash(token),)).fetchone() is None
    )


async def run_controller(
    config: ControllerConfig, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
) -> None:
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    store = await trio.to_thread.run_sync(Store.open, data_dir / "waka.db")
    try:
        await _serve(config, store, task_status)
    finally:
        store.close()


async def _serve(
    config: ControllerConfig, store: Store, task_status: trio.TaskStatus[Running]
) -> None:
    data_dir = config.data_dir
    tokens = TokenBook()
    ca = await trio.to_thread.run_sync(CertificateAuthority.open, data_dir / "ca")
    admin_token, join_token = await trio.to_thread.run_sync(
        _bootstrap_tokens, store, tokens, data_dir, ca.fingerprint
    )
    bridge = Bridge.here()
    log_store = await trio.to_thread.run_sync(
        lambda: LogStore(
            data_dir / "logs",
            max_age=config.log_max_age,
            max_bytes_per_app=config.log_max_bytes_per_app,
        )
    )
    hub = LogHub(history=config.log_history, store=log_store)
    # After a restart, `waka logs` shows what happened before it.
    await hub.preload()
    drains = Drains(hub.emit, ca_file=config.drain_ca_file)
    hub.add_sink(drains.offer)
    fleet = Fleet()
    slugs = BlobStore(data_dir / "slugs", kind="slug", suffix=".tgz")
    sources = BlobStore(data_dir / "sources", kind="source", suffix=".tar.gz")
    tmp_dir = data_dir / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    reconciler = Reconciler(
        store,
        fleet,
        hub,
        resync_interval=config.resync_interval,
        stop_grace_seconds=config.stop_grace_seconds,
        boot_timeout_seconds=config.boot_timeout_seconds,
    )

    http_host, http_port = split_address(config.http)
    api_host, api_port = split_address(config.api)

    async with trio.open_nursery() as nursery:

        async def authenticate(token: str) -> str | None:
            identity = tokens.identify(token)
            return identity.subject if identity and identity.kind == "user" else None

        async def app_exists(name: str) -> bool:
            return bool(
                await store.read(
                    lambda db: db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone()
                )
            )

        async def git_deploy(push: Any, output: Any) -> bool:
            fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="push-", suffix=".tar.gz")
            os.close(fd)
            path = Path(name)
            try:
                await push.export(path)
                build = await deployer.deploy(push.app, path, push.new_sha, push.user, output.line)
            finally:
                await trio.Path(path).unlink(missing_ok=True)
            return build.release > 0

        git = GitEndpoint(
            data_dir / "repos",
            data_dir / "run",
            authenticate=authenticate,
            app_exists=app_exists,
            deploy=git_deploy,
        )

        def spawn(fn: Any, *args: Any) -> None:
            nursery.start_soon(fn, *args)

        oneoffs = OneOffs(store, fleet, reconciler)
        attach = AttachHub()
        releaser = Releaser(
            store,
            hub,
            reconciler,
            oneoffs,
            slugs=slugs,
            output_dir=data_dir / "release-output",
            spawn=spawn,
            phase_timeout=config.release_timeout,
        )
        deployer = Deployer(
            store,
            fleet,
            hub,
            releaser,
            sources=sources,
            slugs=slugs,
            build_logs=data_dir / "builds",
            build_timeout=config.build_timeout,
            limits=config.build_limits,
        )
        agents = Agents(store, tokens, fleet, reconciler, deployer, oneoffs, ca)
        ingest = LogIngest(hub, store, log_store)
        await ingest.load()
        log_drains = LogDrains(store, drains, hub)
        await log_drains.load()
        collector = Collector(
            store, fleet, slugs=slugs, sources=sources, keep_releases=config.keep_releases
        )
        collector.building = deployer.running_sources
        nodes = Nodes(
            store,
            tokens,
            fleet,
            reconciler,
            oneoffs,
            policy=Liveness(suspect_after=config.suspect_after, down_after=config.down_after),
            ca_fingerprint=ca.fingerprint,
        )
        bound_http_port = await nursery.start(git.serve, http_host, http_port)
        public_host = config.public_host or http_host
        git_base = f"http://{public_host}:{bound_http_port}"

        table = RoutingTable(domain=config.domain)
        router = Router(
            table,
            log=lambda app, line: hub.emit(app, line, source="router", dyno="router"),
            trusted_proxies=config.trusted_proxies,
        )
        router_host, router_port = split_address(config.router)
        bound_router_port = await nursery.start(router.serve, router_host, router_port)
        routes = Routes(table, store, fleet)
        reconciler.before_push = routes.drain
        agents.on_app_changed = routes.refresh
        agents.on_node_connected = nodes.check
        agents.on_node_leaving = nodes.leave
        await routes.refresh_all()
        apps = Apps(
            store,
            hub,
            reconciler,
            releaser,
            git,
            routes,
            git_url=lambda app: git.url_for(app, git_base),
            web_url=lambda app: f"http://{app}.{config.domain}:{bound_router_port}/",
        )
        apps.on_destroyed = log_drains.forget
        formation = Formation(store, fleet, hub, reconciler)
        addons, backups = build_addons(
            store, hub, reconciler, releaser, fleet, data_dir / "addon-backups"
        )
        reconciler.services = addons.services
        reconciler.service_memory = addons.service_memory
        apps.before_destroy = addons.app_destroyed

        async def renamed(old: str, new: str) -> None:
            await log_drains.renamed(old, new)
            await addons.route_logs()

        apps.on_renamed = renamed
        releaser.rollback_config = addons.rollback_config

        max_rpcs = max(config.grpc_workers - 8, 1)
        set_stream_readers(max_rpcs)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=config.grpc_workers, thread_name_prefix="grpc"),
            maximum_concurrent_rpcs=max_rpcs,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                # Agents ping every 10 s whether or not anything flows. By default a server
                # takes pings on a connection it sends nothing on as misbehaviour (at most one
                # per 5 minutes) and hangs up ("too_many_pings") after two: about 50 s of quiet.
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        names = add_platform_servicers(
            server,
            Services(
                tokens=tokens,
                bridge=bridge,
                store=store,
                apps=apps,
                formation=formation,
                deployer=deployer,
                releaser=releaser,
                oneoffs=oneoffs,
                attach=attach,
                execs=Execs(formation, fleet, attach, hub),
                nodes=nodes,
                routes=routes,
                collector=collector,
                drains=log_drains,
                hub=hub,
                spawn=spawn,
                tmp_dir=tmp_dir,
            ),
        )
        names += add_addons_servicer(
            server,
            AddonServices(
                tokens=tokens, bridge=bridge, addons=addons, backups=backups, spawn=spawn
            ),
        )
        names += add_agent_servicer(
            server,
            AgentServices(
                tokens=tokens,
                bridge=bridge,
                store=store,
                agents=agents,
                ingest=ingest,
                deployer=deployer,
                slugs=slugs,
                sources=sources,
                attach=attach,
                spawn=spawn,
            ),
        )
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        bound_api_port = server.add_insecure_port(f"{api_host}:{api_port}")
        if not bound_api_port:
            raise OSError(f"cannot listen for the API on {config.api}")
        # Agents talk to their own port, over mutual TLS only: no certificate, no call.
        credentials = ca.server_credentials()
        agent_host, agent_port = split_address(config.agent_api)
        bound_agent_port = server.add_secure_port(
            f"{agent_host}:{agent_port}",
            grpc.ssl_server_credentials(
                [(credentials.key_pem, credentials.cert_pem)],
                root_certificates=credentials.ca_pem,
                require_client_auth=True,
            ),
        )
        if not bound_agent_port:
            raise OSError(f"cannot listen for agents on {config.agent_api}")
        agents.agent_endpoint = f"{agent_host}:{bound_agent_port}"
        await addons.route_logs()  # before any agent ships an add-on's lines
        server.start()
        try:
            await nursery.start(nodes.run)
            await nursery.start(collector.run)
            await nursery.start(log_store.run)
            await nursery.start(drains.run)
            await nursery.start(reconciler.run)
            await nursery.start(addons.run)
            health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            running = Running(
                api=f"{api_host}:{bound_api_port}",
                http=f"{http_host}:{bound_http_port}",
                router=f"{router_host}:{bound_router_port}",
                agent_api=agents.agent_endpoint,
                admin_token=admin_token,
                join_token=join_token,
                data_dir=data_dir,
            )
            (data_dir / "controller.json").write_text(
                json.dumps(
                    {
                        "api": running.api,
                        "http": running.http,
                        "router": running.router,
                        "agent_api": running.agent_api,
                    }
                )
                + "\n"
            )
            log.info(
                "controller API on %s, git on %s, router on %s",
                running.api,
                running.http,
                running.router,
            )
            task_status.started(running)
            await trio.sleep_forever()
        finally:
            health_servicer.enter_graceful_shutdown()
            hub.close()
            drains.close()
            fleet.close()
            attach.close_all()
            stopped = server.stop(grace=1.0)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(stopped.wait)
                await log_store.aclose()
            nursery.cancel_scope.cancel()
