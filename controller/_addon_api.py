"""The `Addons` gRPC service: thin, as the other user API servicers (see _api)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from waka.controller._addon_backups import Backups
from waka.controller._addons import Addons, Change
from waka.controller._bridge import Bridge
from waka.controller._errors import WakaError
from waka.controller._rpc import streaming, unary
from waka.controller._tokens import Identity, TokenBook
from waka.v1 import platform_pb2 as pb
from waka.v1 import platform_pb2_grpc as pb_grpc
from waka.v1.common_pb2 import Chunk

log = logging.getLogger("waka.controller")

CHUNK_BYTES = 1024 * 1024
_DONE = object()


@dataclass
class AddonServices:
    tokens: TokenBook
    bridge: Bridge
    addons: Addons
    backups: Backups
    spawn: Callable[..., None]  # starts a task in the controller's nursery (from the trio thread)


def _releases(changes: list[Change]) -> list[pb.AttachmentRelease]:
    return [
        pb.AttachmentRelease(app=c.app, config_var=c.config_var, version=c.version, action=c.action)
        for c in changes
    ]


class AddonsServicer(pb_grpc.AddonsServicer):
    def __init__(self, services: AddonServices) -> None:
        self.s = services
        self.tokens = services.tokens

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.s.bridge.run(fn, *args)

    @unary("user")
    def Create(self, request, context, identity: Identity):
        addon, changes, note = self.run(
            self.s.addons.create,
            request.app,
            request.service,
            request.plan,
            request.as_name,
            request.node,
            identity.subject,
        )
        return pb.AddonChange(addon=addon, releases=_releases(changes), message=note)

    @unary("user")
    def List(self, request, context, identity: Identity):
        return pb.AddonList(addons=self.run(self.s.addons.list, request.app))

    @unary("user")
    def Get(self, request, context, identity: Identity):
        return self.run(self.s.addons.get, request.name, request.app)

    @unary("user")
    def Attach(self, request, context, identity: Identity):
        addon, change = self.run(
            self.s.addons.attach, request.name, request.app, request.as_name, identity.subject
        )
        return pb.AddonChange(addon=addon, releases=_releases([change]))

    @unary("user")
    def Detach(self, request, context, identity: Identity):
        addon, changes = self.run(self.s.addons.detach, request.name, request.app, identity.subject)
        return pb.AddonChange(addon=addon, releases=_releases(changes))

    @unary("user")
    def Destroy(self, request, context, identity: Identity):
        addon, changes = self.run(
            self.s.addons.destroy, request.name, request.confirm, identity.subject
        )
        return pb.AddonChange(addon=addon, releases=_releases(changes))

    @unary("user")
    def Services(self, request, context, identity: Identity):
        return pb.AddonServiceList(services=self.s.bridge.run_sync(self.s.addons.service_list))

    @unary("user")
    def AddServer(self, request, context, identity: Identity):
        return self.run(self.s.addons.add_server, request.service, request.url, request.name)

    @unary("user")
    def ListServers(self, request, context, identity: Identity):
        return pb.AddonServerList(servers=self.run(self.s.addons.list_servers))

    @unary("user")
    def RemoveServer(self, request, context, identity: Identity):
        self.run(self.s.addons.remove_server, request.name)
        return pb.Empty()

    @unary("user")
    def ListBackups(self, request, context, identity: Identity):
        return pb.BackupList(backups=self.run(self.s.backups.list, request.app))

    @streaming("user")
    def CaptureBackup(self, request, context, identity: Identity):
        yield from self._stream(
            lambda emit: self.s.backups.capture(request.name, request.app, emit)
        )

    @streaming("user")
    def RestoreBackup(self, request, context, identity: Identity):
        yield from self._stream(
            lambda emit: self.s.backups.restore(
                request.id, request.name, request.app, request.confirm, emit
            )
        )

    def _stream(
        self, start: Callable[[Callable[[str], Awaitable[None]]], Awaitable[pb.Backup]]
    ) -> Iterator[pb.BackupEvent]:
        """Runs a backup operation in the controller's nursery (it finishes even if the caller
        goes), relaying its output lines and then its result."""
        events: queue.Queue[Any] = queue.Queue()

        async def emit(line: str) -> None:
            events.put(pb.BackupEvent(output=line))

        async def work() -> None:
            try:
                events.put(pb.BackupEvent(finished=await start(emit)))
            except WakaError as error:
                events.put(error)
            except Exception:
                # Never into the controller's nursery: that would stop the controller.
                log.exception("backup operation failed")
                events.put(WakaError("The backup operation failed; see the controller log."))
            finally:
                events.put(_DONE)

        self.s.bridge.run_sync(self.s.spawn, work)
        while (item := events.get()) is not _DONE:
            if isinstance(item, WakaError):
                raise item
            yield item

    @streaming("user")
    def DownloadBackup(self, request, context: grpc.ServicerContext, identity: Identity):
        path = self.run(self.s.backups.path, request.id)
        # A pool thread of grpc's, not the trio loop: reading the file here blocks nobody.
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield Chunk(data=chunk)


def add_addons_servicer(server: grpc.Server, services: AddonServices) -> list[str]:
    """Registers the Addons service; returns its full name (for reflection)."""
    pb_grpc.add_AddonsServicer_to_server(AddonsServicer(services), server)
    return [pb.DESCRIPTOR.services_by_name["Addons"].full_name]
