"""The agent process: joins a controller, keeps a session open, runs dynos and builds."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import trio

from waka.agent._builder import Builder, find_tools
from waka.agent._cgroups import agent_cgroup_parent
from waka.agent._dyno import DynoContext
from waka.agent._dynos import DynoManager
from waka.agent._exec import run_exec
from waka.agent._follow import open_file_watcher
from waka.agent._identity import (
    IdentityError,
    NodeIdentity,
    certificate_request,
    check_ca,
    dial_endpoint,
    new_key,
)
from waka.agent._logship import LogShipper
from waka.agent._netns import PrivateNetworks, missing_tools
from waka.agent._sandbox import Driver, pick_driver
from waka.agent._slugs import SlugCache
from waka.agent._stall import StallWatch
from waka.agent._wire import Controller, Outbox, join, locate, responses
from waka.v1.agent_pb2 import (
    AgentMessage,
    BuildJob,
    BuildOutput,
    BuildResult,
    ControllerMessage,
    ExecJob,
    Hello,
    Inventory,
    Leaving,
    NodeStatus,
)

log = logging.getLogger("waka.agent")

VERSION = "0.1.0"


class AgentError(Exception):
    """The agent cannot start; the message says what to do."""


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    controller: str
    join_token: str = ""
    name: str = ""
    # The address other hosts use to reach this node's dynos; found from the route to the
    # controller when empty.
    address: str = ""
    allow_unisolated: bool = False
    heartbeat_interval: float = 5.0
    # Seconds to wait before coalescing state changes into one status message.
    status_debounce: float = 0.02
    # On a deliberate stop, how long the agent waits for its dynos to move to other nodes
    # (replacements up, then the old ones stopped) before it stops what is left.
    leave_timeout: float = 90.0
    # Dynos booting at once on this node (0: four per CPU, at least four).
    max_starting: int = 0
    # Seconds without the controller after which this node stops its dynos, for apps that must
    # never run twice (the controller starts them elsewhere once the node is down). 0: never.
    fence_after: float = 0.0


def start_slots(configured: int) -> int:
    """How many dynos may boot at once: as configured, else four per CPU (at least four)."""
    return configured if configured > 0 else max(4, 4 * (os.cpu_count() or 1))


def advertised_address(controller: str, configured: str) -> str:
    if configured:
        return configured
    host, _, port = controller.rpartition(":")
    host = host.strip("[]")
    if host in {"127.0.0.1", "localhost", "::1", ""}:
        return "127.0.0.1"
    # The local address of the route to the controller; UDP connect sends nothing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, int(port or 1)))
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostname()


def private_networks(data_dir: Path, address: str, driver: Driver) -> PrivateNetworks | None:
    """The node's private networks, or None where its dynos cannot have them: the plain driver
    cannot enter a namespace, and ip/nft/nsenter must be there (dynos of apps with the feature
    then fail to start with an R99 saying so, and the rest of the node works as before)."""
    if not driver.isolated:
        return None
    missing = missing_tools()
    if missing:
        log.warning("private networks are unavailable on this node: missing %s", ", ".join(missing))
        return None
    return PrivateNetworks.for_agent(data_dir, address, log.warning)


def inventory(data_dir: Path, address: str, isolated: bool) -> Inventory:
    memory = psutil.virtual_memory()
    return Inventory(
        cpus=psutil.cpu_count() or 1,
        memory_total_mb=memory.total // (1024 * 1024),
        memory_free_mb=memory.available // (1024 * 1024),
        disk_free_mb=psutil.disk_usage(str(data_dir)).free // (1024 * 1024),
        load1=os.getloadavg()[0],
        address=address,
        version=VERSION,
        isolated=isolated,
    )


@dataclass
class _Session:
    outbox: Outbox[AgentMessage] = field(default_factory=Outbox)


class Agent:
    def __init__(self, config: AgentConfig, *, driver: Driver | None = None) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self._driver = driver
        self._controller: Controller | None = None
        self._session: _Session | None = None
        self._status_changed = trio.Event()
        self._slugs: SlugCache | None = None
        self._dynos: DynoManager | None = None
        self._stop_dynos = False
        self._leave_reply: trio.Event = trio.Event()
        # Since when (trio time) no session with the controller works; None while one does.
        self._controller_lost_at: float | None = None
        self._moving = False
        self.name = ""

    def stop_dynos_on_exit(self) -> None:
        """Makes the coming cancellation a deliberate stop: the node's dynos stop with the agent."""
        self._stop_dynos = True
        if self._dynos is not None:
            self._dynos.stop_dynos_on_exit = True

    async def leave(self) -> None:
        """Before a deliberate stop: asks the controller to move this node's dynos and waits,
        up to the leave timeout, until each has a replacement up elsewhere and was stopped here,
        so that a host taken down for maintenance drops no dyno and reports no crash."""
        session, dynos = self._session, self._dynos
        if session is None or dynos is None or not dynos.movable_count():
            return
        self._leave_reply = trio.Event()
        session.outbox.put(AgentMessage(leaving=Leaving()))
        with trio.move_on_after(10):
            await self._leave_reply.wait()
        if not self._moving:
            return
        log.info("moving %d dynos to other nodes before stopping", dynos.movable_count())
        with trio.move_on_after(self.config.leave_timeout) as waiting:
            # Dynos leave the manager one by one as they stop; nothing announces the last. A
            # second reply says there is nowhere left to move them (the others left too).
            while dynos.movable_count() and self._moving:  # noqa: ASYNC110
                await trio.sleep(0.1)
        if not self._moving:
            log.info(
                "no node is left to take the %d remaining dynos; stopping them here",
                dynos.movable_count(),
            )
        elif waiting.cancelled_caught:
            log.warning(
                "%d dynos were not moved within %ss; stopping them here",
                dynos.movable_count(),
                self.config.leave_timeout,
            )

    def _mark_changed(self) -> None:
        self._status_changed.set()

    def _controller_now(self) -> Controller | None:
        return self._controller

    def _credentials(self, address: str, isolated: bool) -> NodeIdentity:
        path = self.data_dir / "node.json"
        try:
            credentials = NodeIdentity.load(self.data_dir)
        except IdentityError as error:
            raise AgentError(str(error)) from None
        if credentials is not None:
            return self._relocated(credentials)
        if not self.config.join_token:
            raise AgentError(
                f"this agent has not joined a controller yet ({path} does not exist): give it a "
                "join token with --token (the controller writes one to its data dir as join-token)"
            )
        name = self.config.name or socket.gethostname()
        key_pem, key = new_key()
        try:
            reply = join(
                self.config.controller,
                self.config.join_token,
                name,
                inventory(self.data_dir, address, isolated),
                certificate_request(key, name),
            )
        except grpc.RpcError as error:
            raise AgentError(
                f"cannot join the controller at {self.config.controller}: {error.details()}"
            ) from None
        try:
            check_ca(reply.ca_certificate, self.config.join_token)
        except IdentityError as error:
            raise AgentError(str(error)) from None
        credentials = NodeIdentity(
            node_id=reply.node_id,
            name=reply.name,
            controller=self.config.controller,
            endpoint=dial_endpoint(reply.agent_endpoint, self.config.controller),
            key_pem=key_pem,
            cert_pem=reply.certificate,
            ca_pem=reply.ca_certificate,
        )
        credentials.save(self.data_dir)
        return credentials

    def _relocated(self, credentials: NodeIdentity) -> NodeIdentity:
        """The saved identity, with the agent port the controller reports now (it may have been
        restarted on another port); the saved one if the controller cannot be asked."""
        try:
            answer = locate(self.config.controller or credentials.controller, timeout=5)
        except grpc.RpcError as error:
            log.warning(
                "cannot ask the controller where its agent port is (%s); trying %s",
                error.details(),
                credentials.endpoint,
            )
            return credentials
        endpoint = dial_endpoint(answer, self.config.controller or credentials.controller)
        if endpoint != credentials.endpoint:
            log.info("the controller's agent port moved: %s -> %s", credentials.endpoint, endpoint)
            credentials.endpoint = endpoint
            credentials.save(self.data_dir)
        return credentials

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        driver = self._driver or pick_driver(
            allow_unisolated=self.config.allow_unisolated,
            log=log.warning,
            cgroup_parent=agent_cgroup_parent(self.data_dir),
        )
        address = advertised_address(self.config.controller, self.config.address)
        credentials = await trio.to_thread.run_sync(self._credentials, address, driver.isolated)
        self.name = credentials.name
        self._controller = Controller(
            credentials.endpoint,
            key_pem=credentials.key_pem,
            cert_pem=credentials.cert_pem,
            ca_pem=credentials.ca_pem,
        )
        shipper = LogShipper()
        slugs = SlugCache(self.data_dir / "slugs", self._controller_now)
        networks = private_networks(self.data_dir, address, driver)
        self._slugs = slugs
        try:
            async with (
                open_file_watcher(log=log.warning) as watcher,
                trio.open_nursery() as nursery,
            ):
                context = DynoContext(
                    driver=driver,
                    slugs=slugs,
                    watcher=watcher,
                    emit=shipper.emit,
                    next_seq=lambda: shipper.next_seq,
                    changed=self._mark_changed,
                    controller=self._controller_now,
                    volumes=self.data_dir / "volumes",
                    start_slots=trio.CapacityLimiter(start_slots(self.config.max_starting)),
                    networks=networks,
                )
                dynos = DynoManager(self.data_dir / "dynos", context)
                dynos.stop_dynos_on_exit = self._stop_dynos
                self._dynos = dynos
                shipper.on_ack(dynos.acknowledged)
                builder = Builder(
                    self.data_dir,
                    driver=driver,
                    slugs=slugs,
                    controller=self._controller_now,
                    tools=find_tools(),
                )
                nursery.start_soon(StallWatch(log=log.warning).run)
                await nursery.start(dynos.run)
                nursery.start_soon(shipper.run, self._controller)
                nursery.start_soon(self._fence, dynos)
                nursery.start_soon(
                    self._sessions, dynos, builder, slugs, shipper, address, driver, nursery
                )
                log.info("agent %s running, controller %s", self.name, self.config.controller)
                task_status.started()
        finally:
            self._controller.close()

    async def _sessions(
        self,
        dynos: DynoManager,
        builder: Builder,
        slugs: SlugCache,
        shipper: LogShipper,
        address: str,
        driver: Driver,
        nursery: trio.Nursery,
    ) -> None:
        """Keeps one session open to the controller, reconnecting after a short backoff."""
        assert self._controller is not None
        delay = 0.2
        while True:
            session = _Session()
            self._session = session

            def status() -> NodeStatus:
                return NodeStatus(
                    dynos=dynos.statuses(),
                    inventory=inventory(self.data_dir, address, driver.isolated),
                    builds=builder.running,
                )

            session.outbox.put(
                AgentMessage(
                    hello=Hello(
                        inventory=inventory(self.data_dir, address, driver.isolated),
                        slugs=slugs.shas(),
                        status=status(),
                        log_seq=shipper.last_seq,
                    )
                )
            )
            call = self._controller.stub.Session(
                iter(session.outbox), metadata=self._controller.metadata
            )
            try:
                async with trio.open_nursery() as session_nursery:
                    session_nursery.start_soon(self._report_status, session, status)
                    async for message in responses(call):
                        delay = 0.2
                        self._controller_lost_at = None
                        self._handle(message, dynos, builder, nursery)
                    session_nursery.cancel_scope.cancel()
            except* grpc.RpcError as errors:
                # Errors from inside the session's nursery arrive grouped.
                codes = {error.code(): error for error in _rpc_errors(errors)}
                if grpc.StatusCode.UNAUTHENTICATED in codes:
                    # The node was removed: nothing here belongs to the fleet any more.
                    self.stop_dynos_on_exit()
                    raise AgentError(
                        "the controller refused this node's certificate (it was revoked: the "
                        f"node was removed): {codes[grpc.StatusCode.UNAUTHENTICATED].details()}."
                        f" To join again, remove {self.data_dir / 'node.json'} and start the "
                        "agent with a new join token."
                    ) from None
                for code, error in codes.items():
                    # A working session's loss is said even when the controller is merely away
                    # (UNAVAILABLE): why a node went suspect is in the transport's reason. The
                    # retries of an outage that follow are not.
                    if code != grpc.StatusCode.UNAVAILABLE or self._controller_lost_at is None:
                        log.warning("session with the controller ended: %s", error.details())
            finally:
                session.outbox.close()
                self._session = None
                if self._controller_lost_at is None:
                    self._controller_lost_at = trio.current_time()
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _fence(self, dynos: DynoManager) -> None:
        """With a fence time: stops the node's dynos once the controller has been out of reach
        that long (it starts them elsewhere when the node is down), so that an app never runs
        twice. They start again here only if the controller, back, still assigns them."""
        fence = self.config.fence_after
        if fence <= 0:
            return
        self._controller_lost_at = trio.current_time()  # until the first session works
        fenced = False
        while True:
            await trio.sleep(min(1.0, fence / 4))
            lost_at = self._controller_lost_at
            if lost_at is None:
                fenced = False
            elif not fenced and trio.current_time() - lost_at >= fence:
                fenced = True
                count = dynos.movable_count()
                if count:
                    log.warning(
                        "the controller has been out of reach for %gs (the fence time): "
                        "stopping this node's %d dynos",
                        fence,
                        count,
                    )
                    dynos.stop_movable()

    async def _report_status(self, session: _Session, status: Callable[[], NodeStatus]) -> None:
        while True:
            with trio.move_on_after(self.config.heartbeat_interval):
                await self._status_changed.wait()
                # Several dynos often change at once (a deploy): report them together.
                await trio.sleep(self.config.status_debounce)
            self._status_changed = trio.Event()
            session.outbox.put(AgentMessage(status=status()))

    async def _exec(self, job: ExecJob, dynos: DynoManager) -> None:
        if self._controller is None:
            return
        try:
            await run_exec(job, dynos.get(job.dyno_id), self._controller)
        except Exception:
            # One user's exec session failing must not take the node's dynos down with it.
            log.exception("exec session %s in dyno %s failed", job.exec_id, job.dyno_id)

    def _handle(
        self,
        message: ControllerMessage,
        dynos: DynoManager,
        builder: Builder,
        nursery: trio.Nursery,
    ) -> None:
        kind = message.WhichOneof("message")
        if kind == "assignment":
            dynos.converge(message.assignment.dynos, message.assignment.keep)
        elif kind == "build_job":
            nursery.start_soon(self._build, builder, message.build_job)
        elif kind == "cancel_build":
            builder.cancel(message.cancel_build.build_id)
        elif kind == "collect_garbage":
            keep = set(message.collect_garbage.keep_slugs) | dynos.slugs_in_use()
            apps = set(message.collect_garbage.apps)
            if self._slugs is not None:
                nursery.start_soon(trio.to_thread.run_sync, self._slugs.collect, keep)
            nursery.start_soon(trio.to_thread.run_sync, builder.collect, apps)
        elif kind == "delete_volume":
            volume = message.delete_volume.id
            if (
                volume in dynos.volumes_in_use()
                or not volume
                or "/" in volume
                or volume in {".", ".."}
            ):
                log.warning("not deleting volume %r: it is in use or not a volume name", volume)
            else:
                nursery.start_soon(
                    trio.to_thread.run_sync, shutil.rmtree, self.data_dir / "volumes" / volume, True
                )
        elif kind == "exec":
            nursery.start_soon(self._exec, message.exec, dynos)
        elif kind == "leave_reply":
            self._moving = message.leave_reply.moving
            self._leave_reply.set()
        elif kind == "purge_cache":
            nursery.start_soon(
                trio.to_thread.run_sync, builder.purge_cache, message.purge_cache.app
            )

    async def _build(self, builder: Builder, job: BuildJob) -> None:
        def send(message: AgentMessage) -> None:
            if self._session is not None:
                self._session.outbox.put(message)

        def output(lines: list[str]) -> None:
            send(AgentMessage(build_output=BuildOutput(build_id=job.build_id, lines=lines)))

        def finish(result: BuildResult) -> None:
            send(AgentMessage(build_result=result))

        await builder.build(job, output, finish)


def _rpc_errors(group: BaseExceptionGroup) -> list[grpc.RpcError]:
    found: list[grpc.RpcError] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_rpc_errors(error))
        elif isinstance(error, grpc.RpcError):
            found.append(error)
    return found


async def run_agent(
    config: AgentConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await Agent(config).run(task_status=task_status)
