"""gRPC servicers for the user API. Thin: check the caller, cross into trio, shape the reply."""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import trio

from waka.controller._apps import AppRow, Apps, find_app
from waka.controller._attach import AttachHub, Rendezvous
from waka.controller._bridge import Bridge, next_request
from waka.controller._deploys import Deployer
from waka.controller._errors import InvalidInput, WakaError
from waka.controller._exec import Execs, ExecSession
from waka.controller._formation import Formation, ScaleChange
from waka.controller._gc import Collector
from waka.controller._log_drains import LogDrains
from waka.controller._logs import LogFilter, LogHub
from waka.controller._nodes import Nodes
from waka.controller._oneoff import OneOff, OneOffs
from waka.controller._releaser import Releaser
from waka.controller._releases import get_release, list_releases
from waka.controller._routes import Routes
from waka.controller._rpc import streaming, unary
from waka.controller._store import Store
from waka.controller._tokens import Identity, TokenBook
from waka.v1 import platform_pb2 as pb
from waka.v1 import platform_pb2_grpc as pb_grpc
from waka.v1.agent_pb2 import AttachFrame
from waka.v1.common_pb2 import LogBatch

MAX_SOURCE_BYTES = 1024 * 1024 * 1024
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 1500
# With --since/--until, history comes from disk and may be longer.
MAX_DURABLE_LINES = 100_000
TAIL_BATCH = 200
# After a one-off dyno ends, how long its exit may take to come through its own stream.
ATTACH_EXIT_GRACE = 2.0
_DONE = object()


@dataclass
class Services:
    """Everything the user API servicers reach, in one bundle."""

    tokens: TokenBook
    bridge: Bridge
    store: Store
    apps: Apps
    formation: Formation
    deployer: Deployer
    releaser: Releaser
    oneoffs: OneOffs
    attach: AttachHub
    execs: Execs
    nodes: Nodes
    routes: Routes
    collector: Collector
    drains: LogDrains
    hub: LogHub
    spawn: Callable[..., None]  # starts a task in the controller's nursery (from the trio thread)
    tmp_dir: Path


class _Base:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.tokens = services.tokens

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.s.bridge.run(fn, *args)


class AppsServicer(_Base, pb_grpc.AppsServicer):
    @unary("user")
    def Create(self, request, context, identity: Identity):
        return self.run(self.s.apps.create, request.name.strip(), identity.subject)

    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.AppList(apps=self.run(self.s.apps.list))

    @unary("user")
    def Get(self, request, context, identity: Identity):
        return self.run(self.s.apps.get, request.app)

    @unary("user")
    def Rename(self, request, context, identity: Identity):
        async def rename() -> pb.App:
            app = await self.s.apps.rename(request.app, request.new_name.strip(), identity.subject)
            # Each dyno's spec has the name it was made with: replace them (preboot applies).
            await self.s.formation.restart(app.name, "", identity.subject)
            return app

        return self.run(rename)

    @unary("user")
    def Destroy(self, request, context, identity: Identity):
        self.run(self.s.apps.destroy, request.app, request.confirm, identity.subject)
        return pb.Empty()

    @unary("user")
    def Update(self, request, context, identity: Identity):
        if request.set_preboot:
            self.run(self.s.apps.set_preboot, request.app, request.preboot, identity.subject)
        if request.set_private_network:
            _, changed = self.run(
                self.s.apps.set_private_network,
                request.app,
                request.private_network,
                identity.subject,
            )
            if changed:
                # The dynos move between the host's network and the app's own: new dynos
                # replace them as `ps:restart` does (a dyno's spec never changes).
                self.run(self.s.formation.restart, request.app, "", identity.subject)
        if request.set_maintenance:
            return self.run(
                self.s.apps.set_maintenance, request.app, request.maintenance, identity.subject
            )
        return self.run(self.s.apps.get, request.app)


class DomainsServicer(_Base, pb_grpc.DomainsServicer):
    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.DomainList(domains=self.run(self.s.routes.domains, request.app))

    @unary("user")
    def Add(self, request, context, identity: Identity):
        return self.run(self.s.routes.add_domain, request.app, request.hostname)

    @unary("user")
    def Remove(self, request, context, identity: Identity):
        self.run(self.s.routes.remove_domain, request.app, request.hostname)
        return pb.Empty()


class ReleasesServicer(_Base, pb_grpc.ReleasesServicer):
    async def _app(self, name: str) -> AppRow:
        return await self.s.store.read(lambda db: find_app(db, name))

    @unary("user")
    def List(self, request, context, identity: Identity):
        async def read():
            app = await self._app(request.app)
            return await self.s.store.read(
                lambda db: list_releases(db, app.id, app.name, app.current_release, request.limit)
            )

        return pb.ReleaseList(releases=self.run(read))

    @unary("user")
    def Get(self, request, context, identity: Identity):
        async def read():
            app = await self._app(request.app)
            version = request.version or app.current_release
            if not version:
                raise InvalidInput(f"{app.name} has no releases yet.")
            return await self.s.store.read(
                lambda db: get_release(db, app.id, app.name, app.current_release, version)
            )

        return self.run(read)

    @unary("user")
    def Rollback(self, request, context, identity: Identity):
        version, _ = self.run(
            self.s.releaser.rollback, request.app, request.version, identity.subject
        )
        return self.Get(pb.ReleaseRef(app=request.app, version=version), context)

    @unary("user")
    def Retry(self, request, context, identity: Identity):
        version, _ = self.run(self.s.releaser.retry, request.app, identity.subject)
        return self.Get(pb.ReleaseRef(app=request.app, version=version), context)

    @unary("user")
    def Output(self, request, context, identity: Identity):
        return pb.OutputLines(lines=self.run(self.s.releaser.output, request.app, request.version))


class FormationServicer(_Base, pb_grpc.FormationServicer):
    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.FormationList(entries=self.run(self.s.formation.list, request.app))

    @unary("user")
    def Scale(self, request, context, identity: Identity):
        changes = [
            ScaleChange(
                type=c.type.strip(),
                quantity=c.quantity if c.has_quantity else None,
                relative=c.relative,
                size=c.size,
            )
            for c in request.changes
        ]
        entries = self.run(self.s.formation.scale, request.app, changes, identity.subject)
        return pb.FormationList(entries=entries)


class DynosServicer(_Base, pb_grpc.DynosServicer):
    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.DynoList(dynos=self.run(self.s.formation.dynos, request.app))

    @unary("user")
    def Restart(self, request, context, identity: Identity):
        self.run(self.s.formation.restart, request.app, request.target.strip(), identity.subject)
        return pb.Empty()

    @unary("user")
    def Stop(self, request, context, identity: Identity):
        self.run(self.s.formation.stop, request.app, request.target.strip(), identity.subject)
        return pb.Empty()

    @unary("user")
    def RunDetached(self, request, context, identity: Identity):
        async def start() -> pb.Dyno:
            oneoff = await self.s.oneoffs.create(
                request.app, request.command, size=request.size, env=dict(request.env)
            )
            self.s.hub.emit(
                request.app,
                f"Starting process with command `{oneoff.command}` by {identity.subject}",
            )
            await self.s.oneoffs.launch(oneoff)
            return _oneoff_dyno(oneoff)

        return self.run(start)

    @streaming("user")
    def Run(self, request_iterator, context: grpc.ServicerContext, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("input") != "spec":
            raise InvalidInput("The first message of a run must carry its spec.")
        spec = first.spec
        bridge = self.s.bridge
        oneoff, rendezvous = self.run(self._start_attached, spec, identity.subject)
        try:
            yield pb.RunEvent(started=_oneoff_dyno(oneoff))
            bridge.run_sync(self.s.spawn, self._report_end, oneoff, rendezvous)
            yield from _relay(bridge, request_iterator, rendezvous, context, self.s.spawn)
        finally:
            with contextlib.suppress(Exception):
                bridge.run(self._end_attached, oneoff)

    @streaming("user")
    def Exec(self, request_iterator, context: grpc.ServicerContext, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("input") != "spec":
            raise InvalidInput("The first message of an exec must carry its spec.")
        bridge = self.s.bridge
        execution: ExecSession = self.run(self.s.execs.start, first.spec, identity.subject)
        try:
            yield pb.RunEvent(started=execution.dyno)
            bridge.run_sync(self.s.spawn, self.s.execs.watch, execution)
            rendezvous = execution.rendezvous
            yield from _relay(bridge, request_iterator, rendezvous, context, self.s.spawn)
        finally:
            bridge.call_soon(self.s.execs.end, execution)

    async def _start_attached(self, spec: pb.RunSpec, user: str) -> tuple[OneOff, Rendezvous]:
        oneoff = await self.s.oneoffs.create(
            spec.app,
            spec.command,
            size=spec.size,
            env=dict(spec.env),
            attach=True,
            tty=spec.tty,
            window=(spec.cols, spec.rows),
        )
        rendezvous = self.s.attach.open(oneoff.id, oneoff.node_id)
        self.s.hub.emit(spec.app, f"Starting process with command `{oneoff.command}` by {user}")
        await self.s.oneoffs.launch(oneoff)
        return oneoff, rendezvous

    async def _report_end(self, oneoff: OneOff, rendezvous: Rendezvous) -> None:
        """If the dyno ends without its agent saying so on the stream, say so to the user."""
        code = await self.s.oneoffs.wait(oneoff)
        await trio.sleep(ATTACH_EXIT_GRACE)
        if code < 0:
            await rendezvous.to_user(
                AttachFrame(error="the dyno could not start, or its node was lost")
            )
        else:
            await rendezvous.to_user(AttachFrame(exit_code=code))

    async def _end_attached(self, oneoff: OneOff) -> None:
        self.s.attach.close(oneoff.id)
        await self.s.oneoffs.remove(oneoff)


class NodesServicer(_Base, pb_grpc.NodesServicer):
    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.NodeList(nodes=self.run(self.s.nodes.list))

    @unary("user")
    def CreateJoinToken(self, request, context, identity: Identity):
        return self.run(
            self.s.nodes.create_join_token, request.ttl_seconds, request.uses, identity.subject
        )

    @unary("user")
    def Remove(self, request, context, identity: Identity):
        self.run(self.s.nodes.remove, request.name)
        return pb.Empty()

    @unary("user")
    def Cordon(self, request, context, identity: Identity):
        return self.run(self.s.nodes.cordon, request.name)

    @unary("user")
    def Uncordon(self, request, context, identity: Identity):
        return self.run(self.s.nodes.uncordon, request.name)

    @unary("user")
    def Drain(self, request, context, identity: Identity):
        return self.run(self.s.nodes.drain, request.name)

    @unary("user")
    def Adopt(self, request, context, identity: Identity):
        return self.run(self.s.nodes.adopt, request.name)


def _oneoff_dyno(oneoff: OneOff) -> pb.Dyno:
    return pb.Dyno(
        id=oneoff.id,
        app=oneoff.app,
        name=oneoff.name,
        type=oneoff.name.partition(".")[0],
        release=oneoff.release,
        command=oneoff.command,
    )


class ConfigServicer(_Base, pb_grpc.ConfigServicer):
    @unary("user")
    def Get(self, request, context, identity: Identity):
        return pb.ConfigVars(vars=self.run(self.s.apps.config, request.app))

    @unary("user")
    def Update(self, request, context, identity: Identity):
        config, version = self.run(
            self.s.apps.update_config,
            request.app,
            dict(request.set),
            list(request.unset),
            identity.subject,
        )
        return pb.ConfigChange(vars=config, release=version)


class BuildsServicer(_Base, pb_grpc.BuildsServicer):
    @streaming("user")
    def Create(self, request_iterator, context, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("The first message of a build upload must carry its header.")
        header = first.header
        self.run(self.s.apps.get, header.app)  # fail fast for an unknown app
        path = self._receive(request_iterator)
        events: queue.Queue[Any] = queue.Queue()
        try:
            self.s.bridge.run_sync(
                self.s.spawn,
                self._deploy,
                header.app,
                path,
                header.source_version or "upload",
                identity.subject,
                events,
                not header.no_wait,
            )
            while (item := events.get()) is not _DONE:
                if isinstance(item, WakaError):
                    raise item
                yield item
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _receive(self, request_iterator: Iterator[pb.BuildUpload]) -> Path:
        fd, name = tempfile.mkstemp(dir=self.s.tmp_dir, prefix="source-", suffix=".tar.gz")
        size = 0
        with os.fdopen(fd, "wb") as f:
            for message in request_iterator:
                size += len(message.data)
                if size > MAX_SOURCE_BYTES:
                    os.unlink(name)
                    raise InvalidInput("The source is larger than 1 GB.")
                f.write(message.data)
        return Path(name)

    async def _deploy(
        self,
        app: str,
        path: Path,
        version: str,
        user: str,
        events: queue.Queue[Any],
        wait: bool,
    ) -> None:
        async def emit(line: str) -> None:
            events.put(pb.BuildEvent(output=pb.OutputLines(lines=[line])))

        try:
            build = await self.s.deployer.deploy(app, path, version, user, emit, wait=wait)
            events.put(pb.BuildEvent(finished=build))
        except WakaError as error:
            events.put(error)
        finally:
            events.put(_DONE)

    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.BuildList(builds=self.run(self.s.deployer.list, request.app))

    @unary("user")
    def Get(self, request, context, identity: Identity):
        return self.run(self.s.deployer.get, request.app, request.id)

    @unary("user")
    def Output(self, request, context, identity: Identity):
        return pb.OutputLines(lines=self.run(self.s.deployer.output, request.app, request.id))

    @unary("user")
    def Cancel(self, request, context, identity: Identity):
        return self.run(self.s.deployer.cancel, request.app, request.id)

    @unary("user")
    def CollectGarbage(self, request, context, identity: Identity):
        return self.run(lambda: self.s.collector.collect(immediate=request.immediate))

    @unary("user")
    def PurgeCache(self, request, context, identity: Identity):
        self.run(self.s.apps.get, request.app)
        self.s.bridge.run_sync(self.s.deployer.purge_cache, request.app)
        return pb.Empty()


class BuildpacksServicer(_Base, pb_grpc.BuildpacksServicer):
    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.BuildpackList(
            app=request.app, buildpacks=self.run(self.s.apps.buildpacks, request.app)
        )

    @unary("user")
    def Set(self, request, context, identity: Identity):
        buildpacks = self.run(
            self.s.apps.set_buildpacks, request.app, list(request.buildpacks), identity.subject
        )
        return pb.BuildpackList(app=request.app, buildpacks=buildpacks)


class LogsServicer(_Base, pb_grpc.LogsServicer):
    @streaming("user")
    def Tail(self, request, context: grpc.ServicerContext, identity: Identity):
        self.run(self.s.apps.get, request.app)
        log_filter = LogFilter(source=request.source.strip(), dyno=request.dyno.strip())
        since, until = request.since_us, request.until_us
        durable = bool(since or until)
        limit = MAX_DURABLE_LINES if durable else MAX_LOG_LINES
        num = request.num or (limit if durable else DEFAULT_LOG_LINES)
        if num < 0 or num > limit:
            raise InvalidInput(f"--num must be between 1 and {limit}.")
        if until and request.follow:
            raise InvalidInput("--until cannot be combined with --tail: a tail has no end.")
        if since and until and since >= until:
            raise InvalidInput("--since must be before --until.")
        hub = self.s.hub
        bridge = self.s.bridge
        if not request.follow:
            if durable:
                history = bridge.run(
                    lambda: hub.query(request.app, log_filter, num, since or None, until or None)
                )
            else:
                history = bridge.run_sync(hub.history, request.app, log_filter, num)
            for i in range(0, len(history), TAIL_BATCH):
                yield LogBatch(lines=history[i : i + TAIL_BATCH])
            return
        if since:
            history, tail = bridge.run(
                lambda: hub.open_tail_since(request.app, log_filter, num, since)
            )
        else:
            history, tail = bridge.run_sync(hub.open_tail, request.app, log_filter, num)
        context.add_callback(lambda: bridge.call_soon(hub.close_tail, tail))
        try:
            for i in range(0, len(history), TAIL_BATCH):
                yield LogBatch(lines=history[i : i + TAIL_BATCH])
            while context.is_active():
                # Already serialized: live lines mostly go out as the agents' batches were.
                payload = bridge.run(tail.next_payload)
                if payload is None:
                    return
                yield payload
        finally:
            bridge.call_soon(hub.close_tail, tail)

    @unary("user")
    def ListDrains(self, request, context, identity: Identity):
        return pb.LogDrainList(drains=self.run(self.s.drains.list, request.app))

    @unary("user")
    def AddDrain(self, request, context, identity: Identity):
        return self.run(self.s.drains.add, request.app, request.url, identity.subject)

    @unary("user")
    def RemoveDrain(self, request, context, identity: Identity):
        self.run(self.s.drains.remove, request.app, request.url, identity.subject)
        return pb.Empty()


def _relay(
    bridge: Bridge,
    requests: Iterator[pb.RunInput],
    rendezvous: Rendezvous,
    context: grpc.ServicerContext,
    spawn: Callable[..., None],
) -> Iterator[pb.RunEvent]:
    """The user's side of an attached command (`run`, `ps:exec`): input down, output up, until
    the exit (or an error) comes through."""
    bridge.run_sync(spawn, _pump_user_input, requests, rendezvous)
    context.add_callback(lambda: bridge.call_soon(rendezvous.close))
    while (frame := bridge.run(rendezvous.next_for_user)) is not None:
        kind = frame.WhichOneof("frame")
        if kind == "stdout":
            yield pb.RunEvent(stdout=frame.stdout)
        elif kind == "stderr":
            yield pb.RunEvent(stderr=frame.stderr)
        elif kind == "exit_code":
            yield pb.RunEvent(exit_code=frame.exit_code)
            return
        elif kind == "error":
            yield pb.RunEvent(error=frame.error)
            return


async def _pump_user_input(requests: Iterator[pb.RunInput], rendezvous: Rendezvous) -> None:
    """Forwards what the user types (and resizes, signals) to the dyno until the user goes."""
    try:
        while (message := await next_request(requests)) is not None:
            kind = message.WhichOneof("input")
            if kind == "stdin":
                await rendezvous.to_dyno(AttachFrame(stdin=message.stdin))
            elif kind == "stdin_eof":
                await rendezvous.to_dyno(AttachFrame(stdin_eof=True))
            elif kind == "resize":
                await rendezvous.to_dyno(AttachFrame(resize=message.resize))
            elif kind == "signal":
                await rendezvous.to_dyno(AttachFrame(signal=message.signal))
    finally:
        rendezvous.close()


class _Registrations:
    """Stands in for a server to a generated `add_*Servicer_to_server`: keeps its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.service, self.handlers = service, handlers


def _log_batch_bytes(batch: LogBatch | bytes) -> bytes:
    return batch if isinstance(batch, bytes) else batch.SerializeToString()


def _add_logs_servicer(servicer: LogsServicer, server: grpc.Server) -> None:
    """The generated registration, except that Tail may also yield a LogBatch already
    serialized (as bytes)."""
    registrations = _Registrations()
    pb_grpc.add_LogsServicer_to_server(servicer, registrations)
    handlers = dict(registrations.handlers)
    handlers["Tail"] = handlers["Tail"]._replace(response_serializer=_log_batch_bytes)
    service = registrations.service
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def add_platform_servicers(server: grpc.Server, services: Services) -> list[str]:
    """Registers every user-facing service; returns their full names (for reflection)."""
    pb_grpc.add_AppsServicer_to_server(AppsServicer(services), server)
    pb_grpc.add_ReleasesServicer_to_server(ReleasesServicer(services), server)
    pb_grpc.add_FormationServicer_to_server(FormationServicer(services), server)
    pb_grpc.add_DynosServicer_to_server(DynosServicer(services), server)
    pb_grpc.add_ConfigServicer_to_server(ConfigServicer(services), server)
    pb_grpc.add_BuildsServicer_to_server(BuildsServicer(services), server)
    _add_logs_servicer(LogsServicer(services), server)
    pb_grpc.add_NodesServicer_to_server(NodesServicer(services), server)
    pb_grpc.add_DomainsServicer_to_server(DomainsServicer(services), server)
    pb_grpc.add_BuildpacksServicer_to_server(BuildpacksServicer(services), server)
    names = (
        "Apps",
        "Releases",
        "Formation",
        "Dynos",
        "Config",
        "Builds",
        "Logs",
        "Nodes",
        "Domains",
        "Buildpacks",
    )
    return [pb.DESCRIPTOR.services_by_name[name].full_name for name in names]
