"""A simulated fleet for the scheduler benchmark: many fake agents speaking the real agent protocol.

Each fake agent makes its own key, joins with the join token and a certificate request (the
real agent's code: waka.agent._identity), opens the Session stream on the controller's mutual-TLS
agent port with the certificate it got, says hello, then reports its
status the way a real agent does: level-triggered (the full list of what it runs), after a short
debounce so that one assignment gives one status, and every few seconds as a heartbeat. On every
Assignment it "runs" the assigned dynos at once (reports them up with a port; no processes) and
forgets what is no longer assigned, exactly like a real agent's converge. Build jobs get a failed
result: the simulated nodes have no builder (the benchmark lets one real agent build).

All agents live in one process on grpc.aio: one event loop and no thread per stream, so 200 of them
cost the machine little next to the controller they load (a thread-per-stream client would need two
threads per agent). Each has its own TLS channel, since the client certificate is the node's
identity. grpc.aio is asyncio-only, which is why this file is not a trio program.

Run as a program (`python bench/_fleet_sim.py --controller HOST:PORT --token JOIN`), it takes one
JSON command per line on stdin and answers each with one JSON line on stdout:

    {"cmd": "join", "count": 200, "timeout": 120} -> {"nodes": [...], "seconds": 1.2}
    {"cmd": "expect", "counts": {"app": 100}} -> {"mark": T}    (starts watching for convergence)
    {"cmd": "wait", "timeout": 600}           -> {"met_at": T, "first_start": T, ...}
    {"cmd": "disconnect", "node": "sim-007", "expect": {...}}  -> {"at": T, "dynos": 50}
    {"cmd": "stats"}                          -> counters
    {"cmd": "quit"}                           -> {"bye": true}

Times are `time.monotonic()` seconds; CLOCK_MONOTONIC is one clock for every process on the host,
so the benchmark compares them with its own. A failed command answers {"error": "..."}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio

from waka.agent._identity import certificate_request, check_ca, dial_endpoint, new_key
from waka.agent._wire import SERVER_NAME
from waka.v1 import agent_pb2 as pb
from waka.v1 import agent_pb2_grpc as pb_grpc
from waka.v1.common_pb2 import DynoState

# The real agent's figures (agent/_agent.py AgentConfig), so the controller sees the same traffic.
HEARTBEAT_SECONDS = 5.0
STATUS_DEBOUNCE_SECONDS = 0.02
FIRST_PORT = 20000
# Generous memory so that placement spreads by its own rules, never for lack of room (10,000
# standard-1x dynos on 200 nodes commit 25.6 GB each; placement allows 4x overcommit).
SIM_INVENTORY = pb.Inventory(
    cpus=16,
    memory_total_mb=65536,
    memory_free_mb=60000,
    disk_free_mb=100_000,
    load1=0.1,
    address="127.0.0.1",
    version="sim",
    isolated=True,
)
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Without this, channels to the same target share one connection, which a real fleet never does.
    ("grpc.use_local_subchannel_pool", 1),
]
AGENT_CHANNEL_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", SERVER_NAME)]
RECONNECT_DELAYS = (0.2, 0.4, 0.8, 1.6, 2.0)


class Placements:
    """Which dyno names of each app run, counted across the whole simulated fleet."""

    def __init__(self) -> None:
        self.by_app: dict[str, Counter[str]] = {}

    def started(self, app: str, name: str) -> None:
        self.by_app.setdefault(app, Counter())[name] += 1

    def stopped(self, app: str, name: str) -> None:
        names = self.by_app[app]
        names[name] -= 1
        if names[name] <= 0:
            del names[name]

    def satisfies(self, counts: dict[str, int]) -> bool:
        """Every app runs exactly `count` dynos, each name once (no slot doubled or missing)."""
        for app, count in counts.items():
            names = self.by_app.get(app, Counter())
            if len(names) != count or names.total() != count:
                return False
        return True

    def total(self) -> int:
        return sum(names.total() for names in self.by_app.values())


@dataclass
class Watch:
    """What the benchmark waits for: the fleet running `counts`, every change reported."""

    counts: dict[str, int]
    mark: float
    first_start: float | None = None
    met_at: float | None = None
    met: asyncio.Event = field(default_factory=asyncio.Event)


class FakeAgent:
    def __init__(
        self,
        fleet: Fleet,
        name: str,
        channel: grpc.aio.Channel,
    ) -> None:
        self.fleet = fleet
        self.name = name
        self.channel = channel
        self.stub = pb_grpc.AgentStub(channel)
        self.dynos: dict[str, pb.DynoStatus] = {}
        self.next_port = FIRST_PORT
        self.outbox: deque[pb.AgentMessage] = deque()
        self.changed = asyncio.Event()
        # A change is reported once a status written after it has gone out.
        self.version = 0
        self.reported = 0
        self.connected = asyncio.Event()
        self.dead = False
        self.task: asyncio.Task[None] | None = None
        self.call: grpc.aio.StreamStreamCall | None = None
        self.sessions = 0
        self.errors: Counter[str] = Counter()

    @property
    def dirty(self) -> bool:
        return self.version != self.reported

    # ------------------------------------------------------------ the real agent's converge

    def converge(self, assignment: pb.Assignment) -> None:
        wanted = {spec.id: spec for spec in assignment.dynos}
        keep = set(assignment.keep)
        started = stopped = 0
        for dyno_id in list(self.dynos):
            if dyno_id not in wanted and dyno_id not in keep:
                status = self.dynos.pop(dyno_id)
                self.fleet.placements.stopped(status.app, status.name)
                stopped += 1
        now_us = int(time.time() * 1_000_000)
        for dyno_id, spec in wanted.items():
            if dyno_id in self.dynos:
                continue
            self.dynos[dyno_id] = pb.DynoStatus(
                id=dyno_id,
                app=spec.app,
                name=spec.name,
                state=DynoState.DYNO_STATE_UP,
                release=spec.release,
                pid=100_000 + self.next_port,
                port=self.next_port,
                state_changed_us=now_us,
            )
            self.next_port += 1
            self.fleet.placements.started(spec.app, spec.name)
            started += 1
        if started or stopped:
            self.version += 1
            self.changed.set()
            self.fleet.changed(self, started=started)

    def status(self) -> pb.NodeStatus:
        return pb.NodeStatus(dynos=list(self.dynos.values()), inventory=SIM_INVENTORY)

    def hello(self) -> pb.AgentMessage:
        return pb.AgentMessage(
            hello=pb.Hello(inventory=SIM_INVENTORY, slugs=[], status=self.status(), log_seq=0)
        )

    def handle(self, message: pb.ControllerMessage) -> None:
        kind = message.WhichOneof("message")
        self.fleet.counters[f"received {kind}"] += 1
        if kind == "assignment":
            self.fleet.counters["assigned dyno specs"] += len(message.assignment.dynos)
            self.converge(message.assignment)
        elif kind == "build_job":
            result = pb.BuildResult(
                build_id=message.build_job.build_id,
                ok=False,
                error="a simulated node cannot build",
            )
            self.outbox.append(pb.AgentMessage(build_result=result))
            self.changed.set()

    # ------------------------------------------------------------ the session

    async def run(self) -> None:
        """Keeps one session open until killed, reconnecting like the real agent."""
        attempt = 0
        while not self.dead:
            try:
                await self._session()
                attempt = 0
            except grpc.aio.AioRpcError as error:
                self.errors[error.code().name] += 1
                self.fleet.counters[f"session error {error.code().name}"] += 1
                self.fleet.error_details.setdefault(error.code().name, error.details() or "")
            if self.dead:
                return
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1

    async def _session(self) -> None:
        call = self.stub.Session()  # the identity is the channel's client certificate
        self.call = call
        self.sessions += 1
        await call.write(self.hello())
        self.reported = self.version
        writer = asyncio.create_task(self._write_statuses(call))
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                self.connected.set()
                self.handle(message)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await writer

    async def _write_statuses(self, call: grpc.aio.StreamStreamCall) -> None:
        # Heartbeats of a real fleet are not in step; neither are these.
        first = random.uniform(0, HEARTBEAT_SECONDS)
        timeout = first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)
                await asyncio.sleep(STATUS_DEBOUNCE_SECONDS)
            timeout = HEARTBEAT_SECONDS
            self.changed.clear()
            while self.outbox:
                await call.write(self.outbox.popleft())
            version = self.version
            await call.write(pb.AgentMessage(status=self.status()))
            self.fleet.counters["sent status"] += 1
            self.fleet.counters["sent dyno statuses"] += len(self.dynos)
            self.reported = version
            self.fleet.reported(self)

    def kill(self) -> int:
        """The node dies: its session ends and its dynos are gone with it."""
        self.dead = True
        if self.call is not None:
            self.call.cancel()
        if self.task is not None:
            self.task.cancel()
        for status in self.dynos.values():
            self.fleet.placements.stopped(status.app, status.name)
        count = len(self.dynos)
        self.dynos.clear()
        self.version = self.reported = 0
        return count


class Fleet:
    def __init__(
        self,
        controller: str,
        join_token: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self.join_token = join_token
        self.clock = clock
        self.agents: dict[str, FakeAgent] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.placements = Placements()
        self.counters: Counter[str] = Counter()
        # One example message per gRPC status code the sessions ended with.
        self.error_details: dict[str, str] = {}
        self.watch: Watch | None = None
        self._dirty: set[str] = set()

    # ------------------------------------------------------------ joining

    async def join(
        self, count: int, prefix: str, *, connect_within: float = 120, parallel: int = 16
    ) -> list[str]:
        """Joins `count` new nodes and opens their sessions; returns once each has its first
        assignment (the controller sends one to every node that connects)."""
        first = len(self.agents)
        names = [f"{prefix}-{first + i + 1:03d}" for i in range(count)]
        limit = asyncio.Semaphore(parallel)
        async with grpc.aio.insecure_channel(self.controller, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.AgentStub(channel)

            async def join_one(name: str) -> tuple[bytes, pb.JoinResponse]:
                key_pem, key = new_key()
                async with limit:
                    reply = await stub.Join(
                        pb.JoinRequest(
                            name=name, inventory=SIM_INVENTORY, csr=certificate_request(key, name)
                        ),
                        metadata=(("authorization", f"Bearer {self.join_token}"),),
                        timeout=60,
                        wait_for_ready=True,
                    )
                check_ca(reply.ca_certificate, self.join_token)
                return key_pem, reply

            joined = await asyncio.gather(*(join_one(name) for name in names))
        agents = []
        for key_pem, reply in joined:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=reply.ca_certificate,
                private_key=key_pem,
                certificate_chain=reply.certificate,
            )
            endpoint = dial_endpoint(reply.agent_endpoint, self.controller)
            channel = grpc.aio.secure_channel(endpoint, credentials, options=AGENT_CHANNEL_OPTIONS)
            self.channels.append(channel)
            agent = FakeAgent(self, reply.name, channel)
            agent.task = asyncio.create_task(agent.run())
            self.agents[agent.name] = agent
            agents.append(agent)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(agent.connected.wait() for agent in agents)), connect_within
            )
        except TimeoutError:
            connected = sum(1 for agent in agents if agent.connected.is_set())
            errors = Counter[str]()
            for agent in agents:
                errors.update(agent.errors)
            raise TimeoutError(
                f"only {connected} of {count} nodes had a session after {connect_within:.0f} s"
                f" (session errors: {dict(errors) or 'none'}; for example {self.error_details})"
            ) from None
        return [agent.name for agent in agents]

    # ------------------------------------------------------------ convergence

    def expect(self, counts: dict[str, int]) -> Watch:
        self.watch = Watch(counts=counts, mark=self.clock())
        self._check()
        return self.watch

    def changed(self, agent: FakeAgent, *, started: int) -> None:
        self._dirty.add(agent.name)
        watch = self.watch
        if started and watch is not None and watch.first_start is None:
            watch.first_start = self.clock()

    def reported(self, agent: FakeAgent) -> None:
        if not agent.dirty:
            self._dirty.discard(agent.name)
            self._check()

    def _check(self) -> None:
        watch = self.watch
        if watch is None or watch.met_at is not None or self._dirty:
            return
        if self.placements.satisfies(watch.counts):
            watch.met_at = self.clock()
            watch.met.set()

    async def disconnect(self, name: str) -> int:
        agent = self.agents.get(name)
        if agent is None or agent.dead:
            raise KeyError(f"no live simulated node named {name!r}")
        self._dirty.discard(name)
        count = agent.kill()
        self._check()
        # A dead host's connection goes too (left open, its keepalive pings without data would
        # earn a GOAWAY from the controller).
        self.channels.remove(agent.channel)
        await agent.channel.close()
        return count

    @property
    def unreported(self) -> int:
        """Nodes whose latest change has not gone out in a status yet."""
        return len(self._dirty)

    def stats(self) -> dict[str, object]:
        live = [a for a in self.agents.values() if not a.dead]
        return {
            "agents": len(live),
            "channels": len(self.channels),
            "running": self.placements.total(),
            "per_node": {a.name: len(a.dynos) for a in live},
            "reconnects": sum(max(a.sessions - 1, 0) for a in live),
            "counters": dict(self.counters),
        }

    async def close(self) -> None:
        for agent in self.agents.values():
            agent.dead = True
            if agent.call is not None:
                agent.call.cancel()
            if agent.task is not None:
                agent.task.cancel()
        await asyncio.gather(
            *(a.task for a in self.agents.values() if a.task), return_exceptions=True
        )
        for channel in self.channels:
            await channel.close()


# ---------------------------------------------------------------- the control protocol


async def _command(fleet: Fleet, request: dict) -> dict[str, object]:
    cmd = request.get("cmd")
    if cmd == "join":
        started = fleet.clock()
        names = await fleet.join(
            int(request["count"]),
            str(request.get("prefix", "sim")),
            connect_within=float(request.get("timeout", 120)),
        )
        return {"nodes": names, "seconds": fleet.clock() - started}
    if cmd == "expect":
        watch = fleet.expect({str(k): int(v) for k, v in request["counts"].items()})
        return {"mark": watch.mark, "met_at": watch.met_at}
    if cmd == "wait":
        watch = fleet.watch
        if watch is None:
            raise ValueError("wait needs an expect first")
        try:
            await asyncio.wait_for(watch.met.wait(), float(request.get("timeout", 600)))
        except TimeoutError:
            stats = fleet.stats()
            return {
                "error": f"not converged after {request.get('timeout', 600)} s",
                "running": stats["running"],
                "unreported_nodes": fleet.unreported,
            }
        return {"mark": watch.mark, "first_start": watch.first_start, "met_at": watch.met_at}
    if cmd == "disconnect":
        at = fleet.clock()
        dynos = await fleet.disconnect(str(request["node"]))
        if "expect" in request:
            # Watched from the moment the node died, for the same counts on the others.
            fleet.expect({str(k): int(v) for k, v in request["expect"].items()})
        return {"at": at, "dynos": dynos}
    if cmd == "stats":
        return fleet.stats()
    raise ValueError(f"unknown command {cmd!r}")


async def serve(fleet: Fleet) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request.get("cmd") == "quit":
                print(json.dumps({"bye": True}), flush=True)
                return
            try:
                reply = await _command(fleet, request)
            except Exception as error:  # one bad command must not end the fleet
                reply = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(reply), flush=True)
    finally:
        await fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller", required=True, help="the controller's API HOST:PORT")
    parser.add_argument("--token", required=True, help="a join token")
    args = parser.parse_args()
    asyncio.run(serve(Fleet(args.controller, args.token)))


if __name__ == "__main__":
    main()
