"""gRPC servicer for the agent protocol: join, session stream, logs, slugs and sources."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from sqlite_utils import Database

from waka.controller._agents import Agents, LogIngest
from waka.controller._attach import AttachHub, Rendezvous
from waka.controller._blobs import BlobStore, check_sha256
from waka.controller._bridge import Bridge, next_request
from waka.controller._deploys import Deployer
from waka.controller._errors import InvalidInput, NotFound
from waka.controller._rpc import streaming, unary
from waka.controller._store import Store
from waka.controller._tokens import Identity, TokenBook
from waka.v1 import agent_pb2 as pb
from waka.v1 import agent_pb2_grpc as pb_grpc
from waka.v1.common_pb2 import Chunk


@dataclass
class AgentServices:
    tokens: TokenBook
    bridge: Bridge
    store: Store
    agents: Agents
    ingest: LogIngest
    deployer: Deployer
    slugs: BlobStore
    sources: BlobStore
    attach: AttachHub
    spawn: Callable[..., None]
    clock: Callable[[], float] = time.time


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(self, services: AgentServices) -> None:
        self.s = services
        self.tokens = services.tokens

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.s.bridge.run(fn, *args)

    @unary("join")
    def Join(self, request, context, identity: Identity):
        token = _bearer(context)
        return self.run(self.s.agents.join, token, request.name, request.inventory, request.csr)

    @unary("anyone")
    def Locate(self, request, context, identity: Identity):
        return pb.LocateResponse(agent_endpoint=self.s.agents.agent_endpoint)

    @streaming("node")
    def Session(self, request_iterator, context: grpc.ServicerContext, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidInput("An agent session must start with a hello.")
        bridge = self.s.bridge
        session = self.run(self.s.agents.connected, identity.subject, first.hello)
        bridge.run_sync(self.s.spawn, self.s.agents.pump, session, request_iterator)
        context.add_callback(lambda: bridge.call_soon(session.close))
        while context.is_active():
            message = bridge.run(session.next_message)
            if message is None:
                return
            yield message

    @streaming("node")
    def ShipLogs(self, request_iterator, context: grpc.ServicerContext, identity: Identity):
        # Batches are read and published by a trio task, answers sent from here: an answer
        # waits for nothing but a change, and the next batch never waits for the disk.
        bridge = self.s.bridge
        stream = bridge.run_sync(self.s.ingest.open_stream, identity.subject)
        bridge.run_sync(self.s.spawn, stream.pump, request_iterator)
        context.add_callback(lambda: bridge.call_soon(stream.close))
        while (ack := bridge.run(stream.next_ack)) is not None:
            yield ack

    @unary("node")
    def UploadSlug(self, request_iterator, context, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("The first message of a slug upload must carry its header.")
        header = first.header
        check_sha256(header.sha256)
        upload = self.s.slugs.begin()
        try:
            for message in request_iterator:
                upload.write(message.data)
        except BaseException:
            upload.abort()
            raise
        sha = upload.finish(header.sha256, header.size)
        now = self.s.clock()

        def record(db: Database) -> None:
            db.execute(
                "INSERT OR IGNORE INTO slugs (sha256, size, created_at) VALUES (?, ?, ?)",
                (sha, upload.size, now),
            )

        self.run(self.s.store.write, record)
        return pb.SlugStored(sha256=sha, size=upload.size)

    @streaming("node")
    def DownloadSlug(self, request, context, identity: Identity):
        for data in self.s.slugs.chunks(check_sha256(request.sha256)):
            yield Chunk(data=data)

    @streaming("node")
    def DownloadSource(self, request, context, identity: Identity):
        sha = self.s.bridge.run_sync(self.s.deployer.source_for, request.build_id, identity.subject)
        for data in self.s.sources.chunks(sha):
            yield Chunk(data=data)

    @streaming("node")
    def Attach(self, request_iterator, context, identity: Identity):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("frame") != "dyno_id":
            raise InvalidInput("An attach stream must start with the dyno's id.")
        bridge = self.s.bridge
        rendezvous = bridge.run_sync(self.s.attach.join, first.dyno_id, identity.subject)
        if rendezvous is None:
            raise NotFound(f"No one is waiting for dyno {first.dyno_id} on this node.")
        bridge.run_sync(self.s.spawn, _pump_dyno_output, request_iterator, rendezvous)
        while (frame := bridge.run(rendezvous.next_for_dyno)) is not None:
            yield frame


async def _pump_dyno_output(requests: Iterator[pb.AttachFrame], rendezvous: Rendezvous) -> None:
    """Forwards what the dyno writes (and its exit) to the user."""
    try:
        while (frame := await next_request(requests)) is not None:
            await rendezvous.to_user(frame)
    finally:
        rendezvous.agent_left.set()


def _bearer(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str):
            return value.removeprefix("Bearer ").strip()
    return ""


def add_agent_servicer(server: grpc.Server, services: AgentServices) -> list[str]:
    pb_grpc.add_AgentServicer_to_server(AgentServicer(services), server)
    return [pb.DESCRIPTOR.services_by_name["Agent"].full_name]
