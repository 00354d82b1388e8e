"""All dynos of this node: converging to the controller's assignment, and adopting after a restart.

The controller sends the complete set of dynos this node should run; anything else running is
stopped. At start, dynos recorded on disk are adopted (their sandboxes kept running while the agent
was away) before any assignment arrives, so an agent restart stops nothing.
"""

from __future__ import annotations

import errno
import logging
import random
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

import trio

from waka.agent._dyno import Dyno, DynoContext
from waka.agent._netns import NetworkError
from waka.agent._sandbox import SandboxProcess
from waka.v1.agent_pb2 import DynoSpec, DynoStatus

log = logging.getLogger("waka.agent")

PORT_RANGE = range(20000, 30000)
SAVE_INTERVAL = 1.0


class PortAllocator:
    """Hands out host ports for web dynos, skipping any port something else listens on."""

    def __init__(self, ports: range = PORT_RANGE, *, start: int | None = None) -> None:
        self._ports = ports
        self._taken: set[int] = set()
        # Agents sharing a host each start at their own place in the range, so two of them
        # rarely offer the same free port at the same moment.
        self._next = start if start is not None else random.randrange(ports.start, ports.stop)

    def reserve(self, port: int) -> None:
        self._taken.add(port)

    def release(self, port: int) -> None:
        self._taken.discard(port)

    def allocate(self) -> int:
        for _ in range(len(self._ports)):
            port = self._next
            self._next = port + 1 if port + 1 < self._ports.stop else self._ports.start
            if port not in self._taken and _port_is_free(port):
                self._taken.add(port)
                return port
        raise RuntimeError(f"no free port left in {self._ports.start}-{self._ports.stop - 1}")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class DynoManager:
    def __init__(
        self, root: Path, context: DynoContext, ports: PortAllocator | None = None
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._ctx = context
        self._ports = ports or PortAllocator()
        self._dynos: dict[str, Dyno] = {}
        self._nursery: trio.Nursery | None = None
        # Ports of the assigned host-network services (add-ons), for private networks; the lock
        # keeps updates in order (each applies the latest set).
        self._host_services: frozenset[int] = frozenset()
        self._host_services_lock = trio.Lock()
        # Only a deliberate stop of the agent stops its dynos: an agent that dies of an error
        # (or is killed) leaves them running, and the next agent adopts them.
        self.stop_dynos_on_exit = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs the node's dynos until cancelled; then, if the agent is stopping deliberately,
        stops them all (SIGTERM, grace, SIGKILL)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._adopt_recorded()
            nursery.start_soon(self._save_periodically)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                if self.stop_dynos_on_exit:
                    with trio.CancelScope(shield=True):
                        await self.stop_all()
                        self._ctx.driver.close()  # the agent's cgroup parent, once empty
                elif self._dynos:
                    log.warning(
                        "the agent is going away without stopping: %d dynos keep running for "
                        "the next agent to adopt",
                        len(self._dynos),
                    )
                nursery.cancel_scope.cancel()

    def acknowledged(self, seq: int) -> None:
        for dyno in self._dynos.values():
            dyno.acknowledged(seq)

    async def _save_periodically(self) -> None:
        """Records how far each dyno's output is safely stored, at most once a second."""
        while True:
            await trio.sleep(SAVE_INTERVAL)
            for dyno in list(self._dynos.values()):
                if dyno.dirty:
                    dyno.dirty = False
                    dyno.save()

    def _adopt_recorded(self) -> None:
        restored: list[tuple[Dyno, SandboxProcess | None]] = []
        for directory in sorted(self.root.iterdir()):
            record = Dyno.load_record(directory)
            if record is None:
                shutil.rmtree(directory, ignore_errors=True)
                continue
            try:
                dyno, sandbox = Dyno.restore(directory, record, self._ctx)
            except Exception:
                log.exception("cannot restore the dyno recorded in %s", directory)
                continue
            restored.append((dyno, sandbox))
        # Before any dyno starts a new sandbox: every cgroup not adopted now is a leftover.
        adopted = [sandbox for _, sandbox in restored if sandbox is not None]
        for name in self._ctx.driver.remove_stale_cgroups(adopted):
            log.warning("removed the stale sandbox cgroup %s (and what ran in it)", name)
        self._restore_networks([dyno for dyno, _ in restored])
        for dyno, sandbox in restored:
            self._ports.reserve(dyno.port)
            self._launch(dyno, sandbox)
            if sandbox is not None:
                log.info("adopted %s %s (pid %d)", dyno.spec.app, dyno.spec.name, sandbox.pid)

    def _restore_networks(self, dynos: list[Dyno]) -> None:
        """Adopts the private networks of the restored dynos (they keep running in them) and
        removes the agent's other ones, before any dyno starts."""
        networks = self._ctx.networks
        if networks is None:
            return
        users = [
            (
                dyno.spec.id,
                dyno.spec.app_id or dyno.spec.app,
                dyno.port if dyno.spec.type == "web" or dyno.spec.fixed_port else None,
            )
            for dyno in dynos
            if dyno.spec.private_network
        ]
        try:
            for name in networks.restore(users):
                log.warning("removed the stale private network %s", name)
        except NetworkError as error:
            log.warning("cannot restore the private networks: %s", error)

    def _launch(self, dyno: Dyno, sandbox: SandboxProcess | None = None) -> None:
        assert self._nursery is not None
        self._dynos[dyno.spec.id] = dyno
        self._nursery.start_soon(self._supervise, dyno, sandbox)

    async def _supervise(self, dyno: Dyno, sandbox: SandboxProcess | None) -> None:
        try:
            await dyno.run(sandbox)
        except Exception:
            # One dyno's trouble must never take the agent (and every other dyno) down.
            log.exception("dyno %s of %s failed", dyno.spec.name, dyno.spec.app)
        finally:
            self._dynos.pop(dyno.spec.id, None)
            self._ports.release(dyno.port)
            if self._ctx.networks is not None and not dyno.has_sandbox:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._ctx.networks.detach, dyno.spec.id)
            shutil.rmtree(dyno.directory, ignore_errors=True)
            self._ctx.changed()

    def converge(self, specs: Iterable[DynoSpec], keep: Iterable[str] = ()) -> None:
        """Starts what is assigned and not running; stops what runs and is not assigned, except
        the dynos the controller asked to keep (ones its database does not know)."""
        wanted = {spec.id: spec for spec in specs}
        kept = set(keep)
        for dyno_id, spec in wanted.items():
            if dyno_id not in self._dynos:
                if spec.fixed_port:
                    port = int(spec.fixed_port)
                    self._ports.reserve(port)
                else:
                    port = self._ports.allocate()
                self._launch(Dyno(spec, self.root / dyno_id, port, self._ctx))
        for dyno_id, dyno in list(self._dynos.items()):
            if dyno_id not in wanted and dyno_id not in kept:
                assert self._nursery is not None
                self._nursery.start_soon(dyno.stop)
        services = frozenset(
            int(spec.fixed_port)
            for spec in wanted.values()
            if spec.fixed_port and not spec.private_network
        )
        if self._ctx.networks is not None and services != self._host_services:
            self._host_services = services
            assert self._nursery is not None
            self._nursery.start_soon(self._publish_host_services)
        self._ctx.changed()

    async def _publish_host_services(self) -> None:
        networks = self._ctx.networks
        assert networks is not None
        async with self._host_services_lock:
            await trio.to_thread.run_sync(networks.set_host_services, self._host_services)

    def _movable(self) -> list[Dyno]:
        """The dynos the controller would move to another node: formation dynos, not one-offs
        (which end with their node) nor services pinned to their volume."""
        return [d for d in self._dynos.values() if not d.spec.oneoff and not d.spec.volume]

    def movable_count(self) -> int:
        return len(self._movable())

    def stop_movable(self) -> None:
        assert self._nursery is not None
        for dyno in self._movable():
            self._nursery.start_soon(dyno.stop)

    def get(self, dyno_id: str) -> Dyno | None:
        return self._dynos.get(dyno_id)

    def volumes_in_use(self) -> set[str]:
        return {dyno.spec.volume for dyno in self._dynos.values() if dyno.spec.volume}

    def slugs_in_use(self) -> set[str]:
        return {dyno.spec.slug.sha256 for dyno in self._dynos.values()}

    def statuses(self) -> list[DynoStatus]:
        return [dyno.status() for dyno in self._dynos.values()]

    async def stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for dyno in list(self._dynos.values()):
                nursery.start_soon(dyno.stop)
