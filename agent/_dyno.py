"""One dyno instance through its whole life: start, boot check, supervise, restart, stop.

States, as Heroku names them:

    starting ──(web: accepts on $PORT; others: started)──▶ up
    starting/up ──(process exits, not asked to)──▶ crashed ──(cool-off)──▶ starting
    any ──(stop)──▶ down

Every change is logged as `waka[web.1]: State changed from starting to up`. The dyno's output goes
to a file (so the dyno never depends on the agent) that a follower ships line by line.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from waka.agent._attached import AttachedIO
from waka.agent._backoff import CrashPolicy
from waka.agent._follow import FileWatcher, OutputFollower
from waka.agent._memory import MemoryPolicy, MemorySample
from waka.agent._netns import Attachment, NetworkError, PrivateNetworks
from waka.agent._ratelimit import LineBudget
from waka.agent._sandbox import (
    EXIT_STATUS_UNKNOWN,
    AppMount,
    Bind,
    Driver,
    NetworkNamespace,
    ResourceLimits,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
)
from waka.agent._slugs import SlugCache
from waka.agent._slugtar import SlugError
from waka.agent._wire import Controller
from waka.v1.agent_pb2 import DynoSpec, DynoStatus
from waka.v1.common_pb2 import DynoSize, DynoState, LogBatch, LogLine

log = logging.getLogger("waka.agent")

STATE_NAMES = {
    DynoState.DYNO_STATE_STARTING: "starting",
    DynoState.DYNO_STATE_UP: "up",
    DynoState.DYNO_STATE_CRASHED: "crashed",
    DynoState.DYNO_STATE_DOWN: "down",
    DynoState.DYNO_STATE_PENDING: "pending",
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A dyno's lines read but not yet stored by the controller, above which its follower stops
# reading: the output file holds the rest meanwhile (it is the buffer; the dyno never waits),
# so a burst or an unreachable controller costs disk, not agent memory or dropped lines, and
# one busy dyno cannot fill the shipper's queue for all. About a second at the flood limit.
MAX_UNSTORED_LINES = 10_000
# Heroku's dyno start: source every .profile.d script, then .profile, then run the command.
PROFILE_PRELUDE = (
    'for waka_profile in "$HOME"/.profile.d/*.sh; do'
    ' if [ -r "$waka_profile" ]; then . "$waka_profile"; fi; done; unset waka_profile\n'
    'if [ -r "$HOME/.profile" ]; then . "$HOME/.profile"; fi\n'
)
PORT_POLL_INTERVAL = 0.02
HEALTH_POLL_INTERVAL = 0.2
MEMORY_SAMPLE_INTERVAL = 5.0  # seconds between memory readings (R14/R15)
MIB = 1024 * 1024


def resource_limits(size: DynoSize) -> ResourceLimits | None:
    """The sandbox limits of a dyno size; None for a spec without one (no cgroup at all)."""
    if not (size.memory_mb or size.pids or size.cpu_shares):
        return None
    return ResourceLimits(
        memory_bytes=size.memory_mb * MIB or None,
        max_pids=size.pids or None,
        cpu_shares=size.cpu_shares or None,
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="microseconds")


def _safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_" for c in name)


def dyno_command(command: str, *, tty: bool = False) -> list[str]:
    argv = ["bash", "-c", PROFILE_PRELUDE + command]
    if tty:
        # The sandbox starts a new session without a terminal; make the pty the controlling
        # terminal of a new session so job control and Ctrl-C work as in any shell.
        return ["setsid", "--ctty", "--wait", *argv]
    return argv


def dyno_environment(spec: DynoSpec, port: int) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
    env.update(spec.env)
    env.update(
        {
            "HOME": "/app",
            "DYNO": spec.name,
            "PS": spec.name,
            "STACK": spec.stack or "host",
        }
    )
    if spec.type == "web" or spec.fixed_port:
        env["PORT"] = str(port)
    return env


# The exit code reported for a one-off dyno whose process never started.
NEVER_RAN = -1000


def reported_exit_code(code: int) -> int:
    """Exit codes as shells and Heroku report them: 128+N for a process killed by signal N."""
    if code in {NEVER_RAN, EXIT_STATUS_UNKNOWN}:
        return -1
    return 128 - code if code < 0 else code


def exit_description(code: int) -> str:
    if code == EXIT_STATUS_UNKNOWN:
        return "Process exited (status unknown: the agent restarted meanwhile)"
    if code < 0:
        # bash reports a child killed by signal N as 128+N, and so does Heroku's log.
        return f"Process exited with status {128 - code}"
    return f"Process exited with status {code}"


@dataclass
class DynoContext:
    """What every dyno of this node shares."""

    driver: Driver
    slugs: SlugCache
    watcher: FileWatcher
    # Queues lines for the controller, and returns the sequence number of the last one: the
    # log shipper's `emit` (and its `next_seq`, for lines numbered as they are built).
    emit: Callable[..., int]
    next_seq: Callable[[], int]
    changed: Callable[[], None]
    controller: Callable[[], Controller | None] = lambda: None
    # Where persistent volumes (add-on data) live, and an empty tree for dynos without a slug.
    volumes: Path | None = None
    clock: Callable[[], float] = time.time
    # The app network namespaces of dynos with spec.private_network (None: such dynos fail).
    networks: PrivateNetworks | None = None
    # Dynos starting at once (from spawn until up, or crashed): a node handed fifty dynos at once
    # (a failover, a big scale) boots them a few at a time instead of thrashing. None: no limit.
    start_slots: trio.CapacityLimiter | None = None


class Dyno:
    def __init__(self, spec: DynoSpec, directory: Path, port: int, context: DynoContext) -> None:
        self.spec = spec
        self.directory = directory
        self.port = port
        self._ctx = context
        self.state = DynoState.DYNO_STATE_STARTING
        self.state_changed = context.clock()
        self.restarts = 0
        self.exit_code = 0
        self.message = ""
        self.pid = 0
        self._policy = CrashPolicy()
        self._sandbox: SandboxProcess | None = None
        self._network: Attachment | None = None  # private network (spec.private_network)
        self._holds_start_slot = False
        self._stop_requested = trio.Event()
        self._kill_deadline: float | None = None
        self._output: OutputFollower | None = None
        self._attached: AttachedIO | None = None
        self._memory: MemoryPolicy | None = None
        self.memory_bytes = 0
        self._nursery: trio.Nursery
        self.done = trio.Event()
        # Output up to this offset is stored by the controller: an agent restarted after a
        # crash re-reads from here, so no line is lost.
        self._output_offset = 0
        # Per read shipped and not yet stored: (last seq, offset after it, lines).
        self._unacked: deque[tuple[int, int, int]] = deque()
        self._unstored = 0
        self._room = trio.Event()
        self.dirty = False
        self._budget = LineBudget()
        self._rate_dropped = 0
        self._rate_dropped_since = 0.0
        self.directory.mkdir(parents=True, exist_ok=True)
        self.output_path = directory / "output.log"

    def exec_command(self, command: str, *, tty: bool) -> tuple[list[str], dict[str, str]]:
        """How to run `command` inside this dyno now (`waka ps:exec`): the host argv and its
        environment, the dyno's own. Raises SandboxError when the dyno is not running."""
        sandbox = self._sandbox
        if sandbox is None or self.state != DynoState.DYNO_STATE_UP:
            raise SandboxError(f"dyno {self.spec.name} is not up on this node")
        argv = ["env", "--chdir=/app", "--", *dyno_command(command, tty=tty)]
        return sandbox.exec_command(self.spec.uid, argv), dyno_environment(self.spec, self.port)

    # ------------------------------------------------------------ persistence

    def save(self) -> None:
        record = {
            "spec": base64.b64encode(self.spec.SerializeToString()).decode(),
            "port": self.port,
            "state": int(self.state),
            "state_changed": self.state_changed,
            "restarts": self.restarts,
            "sandbox": self._sandbox.record() if self._sandbox else None,
            "output_offset": self._output_offset,
        }
        tmp = self.directory / "record.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.directory / "record.json")

    @staticmethod
    def load_record(directory: Path) -> dict[str, Any] | None:
        try:
            return json.loads((directory / "record.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @classmethod
    def restore(
        cls, directory: Path, record: dict[str, Any], context: DynoContext
    ) -> tuple[Dyno, SandboxProcess | None]:
        spec = DynoSpec.FromString(base64.b64decode(record["spec"]))
        dyno = cls(spec, directory, int(record["port"]), context)
        dyno.state = DynoState.ValueType(int(record["state"]))
        dyno.state_changed = float(record["state_changed"])
        dyno.restarts = int(record["restarts"])
        dyno._output_offset = int(record.get("output_offset", 0))
        sandbox = None
        if record.get("sandbox"):
            sandbox = context.driver.adopt(record["sandbox"])
            if sandbox is None:
                context.driver.cleanup(record["sandbox"])
        return dyno, sandbox

    # ------------------------------------------------------------ status

    def status(self) -> DynoStatus:
        return DynoStatus(
            id=self.spec.id,
            app=self.spec.app,
            name=self.spec.name,
            state=self.state,
            release=self.spec.release,
            pid=self.pid,
            port=self.port if self.spec.type == "web" else 0,
            exit_code=reported_exit_code(self.exit_code),
            restarts=self.restarts,
            state_changed_us=int(self.state_changed * 1_000_000),
            message=self.message,
            memory_bytes=self.memory_bytes,
            address=self._dial_address() if self.spec.type == "web" else "",
        )

    @property
    def has_sandbox(self) -> bool:
        """Whether a sandbox of this dyno may still run (not cleaned up)."""
        return self._sandbox is not None

    def _attachment(self) -> Attachment | None:
        """The dyno's private network (an adopted dyno's comes from the restored networks)."""
        networks = self._ctx.networks
        if self._network is None and self.spec.private_network and networks is not None:
            self._network = networks.attachment(self.spec.id)
        return self._network

    def _dial_address(self) -> str:
        network = self._attachment()
        networks = self._ctx.networks
        return networks.dial_address(network) if network and networks else ""

    def _dial_host(self) -> str:
        """Where this host reaches the dyno's $PORT."""
        network = self._attachment()
        return str(network.network.ns_ip) if network is not None else "127.0.0.1"

    async def _attach_network(self) -> NetworkNamespace | None:
        if not self.spec.private_network:
            return None
        networks = self._ctx.networks
        if networks is None:
            raise NetworkError("this node cannot run private networks")
        spec = self.spec
        port = self.port if spec.type == "web" or spec.fixed_port else None
        self._network = await trio.to_thread.run_sync(
            networks.attach, spec.id, spec.app_id or spec.app, spec.app, port
        )
        return NetworkNamespace(self._network.network.path, self._network.resolv_conf)

    def _platform(self, text: str) -> LogLine:
        return LogLine(
            time_us=int(self._ctx.clock() * 1_000_000),
            app=self.spec.app,
            source="waka",
            dyno=self.spec.name,
            text=text,
        )

    def _say(self, text: str) -> None:
        self._ctx.emit([self._platform(text)])

    def _set_state(self, state: DynoState.ValueType, message: str = "") -> None:
        self.message = message
        if state == self.state:
            self._ctx.changed()
            return
        old, self.state = self.state, state
        self.state_changed = self._ctx.clock()
        self._say(f"State changed from {STATE_NAMES[old]} to {STATE_NAMES[state]}")
        self.save()
        self._ctx.changed()

    # ------------------------------------------------------------ life

    async def run(self, adopted: SandboxProcess | None = None) -> None:
        """Supervises the dyno until it is stopped; returns once it is down and cleaned up."""
        self._sandbox = adopted
        if adopted is not None:
            self.pid = adopted.pid
            self._memory = self._memory_policy(adopted, adopted=True)
        self._output = self._open_output()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._life()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._finish_sandbox()
                    nursery.cancel_scope.cancel()
        finally:
            self._shipped(self._output.flush_partial(), self._output.ends, self._output.offset)
            self._output.close()
            self.done.set()

    def _open_output(self) -> OutputFollower:
        fd = os.open(self.output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.close(fd)
        return OutputFollower(self.output_path, self._output_offset, watcher=self._ctx.watcher)

    async def _ship_output(
        self, stopped: trio.Event, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        """Ships the dyno's output lines as they are written, until its scope is cancelled."""
        assert self._output is not None
        try:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                while True:
                    while self._unstored >= MAX_UNSTORED_LINES:
                        self._room = trio.Event()
                        await self._room.wait()
                    lines, offset = await self._output.read_lines()
                    self._shipped(lines, self._output.ends, offset)
        finally:
            stopped.set()

    def _shipped(self, lines: list[str], ends: list[int], offset: int) -> None:
        if not lines:
            return
        now = self._ctx.clock()
        allowed = self._budget.take(len(lines), now)
        if allowed < len(lines):
            if not self._rate_dropped:
                self._rate_dropped_since = now
            self._rate_dropped += len(lines) - allowed
            lines, ends = lines[:allowed], ends[:allowed]
        elif self._rate_dropped:
            self._say(
                f"Error L12 (Dyno output rate exceeded) -> {self._rate_dropped} lines dropped"
                f" since {_iso(self._rate_dropped_since)}: this dyno wrote more than"
                f" {int(self._budget.rate)} lines/s."
            )
            self._rate_dropped = 0
        time_us = int(now * 1_000_000)
        app, name, stream = self.spec.app, self.spec.name, self.spec.id
        # Built in place in one batch, field by field: several times cheaper per line than
        # LogLine(**fields) copied into a batch later, and this runs for every line of output.
        batch = LogBatch()
        add = batch.lines.add
        first_seq = self._ctx.next_seq()
        for seq, (text, end) in enumerate(zip(lines, ends, strict=True), start=first_seq):
            line = add()
            line.time_us = time_us
            line.app = app
            line.source = "app"
            line.dyno = name
            line.text = text
            line.stream = stream
            line.offset = end
            line.seq = seq
        last_seq = self._ctx.emit(batch, numbered=True)
        self._unacked.append((last_seq, offset, len(lines)))
        self._unstored += len(lines)

    def acknowledged(self, seq: int) -> None:
        """The controller has every line up to seq: their bytes may go from the output file."""
        advanced = False
        while self._unacked and self._unacked[0][0] <= seq:
            _, self._output_offset, count = self._unacked.popleft()
            self._unstored -= count
            advanced = True
        if self._unstored < MAX_UNSTORED_LINES:
            self._room.set()
        if advanced and self._output is not None:
            self._output.release(self._output_offset)
            self.dirty = True

    async def _start_pump(self) -> tuple[trio.CancelScope, trio.Event]:
        stopped = trio.Event()
        scope = await self._nursery.start(self._ship_output, stopped)
        return scope, stopped

    async def _stop_pump(self, pump: tuple[trio.CancelScope, trio.Event]) -> None:
        """Stops the follower and ships what the process wrote last (partial line included),
        so its exit line comes after all its output in the log stream."""
        scope, stopped = pump
        assert self._output is not None
        scope.cancel()
        await stopped.wait()
        self._shipped(self._output.flush_partial(), self._output.ends, self._output.offset)

    async def _life(self) -> None:
        try:
            await self._live()
        finally:
            self._give_start_slot()

    async def _take_start_slot(self) -> bool:
        """Waits for a start slot (in state `starting`); False if the dyno is stopped first."""
        slots = self._ctx.start_slots
        if slots is None:
            return True
        self._set_state(
            DynoState.DYNO_STATE_STARTING,
            "waiting for other dynos to boot" if slots.available_tokens == 0 else "",
        )
        async with trio.open_nursery() as nursery:

            async def stop_waiting() -> None:
                await self._stop_requested.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_waiting)
            await slots.acquire_on_behalf_of(self)
            self._holds_start_slot = True
            nursery.cancel_scope.cancel()
        return self._holds_start_slot

    def _give_start_slot(self) -> None:
        if self._holds_start_slot and self._ctx.start_slots is not None:
            self._holds_start_slot = False
            self._ctx.start_slots.release_on_behalf_of(self)

    async def _live(self) -> None:
        while not self._stop_requested.is_set():
            if self._sandbox is None:
                if not await self._take_start_slot():
                    break
                started = await self._start()
                if not started:
                    if self.spec.oneoff:
                        self.exit_code = NEVER_RAN
                        break  # a one-off dyno that cannot start has ended
                    await self._cool_off(self._ctx.clock())
                    continue
            started_at = self._ctx.clock()
            pump = None if self.spec.attach else await self._start_pump()
            code = await self._supervise()
            self._give_start_slot()
            self.exit_code = code
            if self._sandbox is not None:
                self._check_memory(self._sandbox)  # an OOM kill ended it: R15 before the exit
            if pump is not None:
                await self._stop_pump(pump)
            if self._attached is not None:
                await self._attached.finish(reported_exit_code(code))
                self._attached = None
            self._say(exit_description(code))
            await self._finish_sandbox()
            if self._stop_requested.is_set() or self.spec.oneoff:
                break
            self._set_state(DynoState.DYNO_STATE_CRASHED)
            await self._cool_off(started_at)
        if self.state != DynoState.DYNO_STATE_CRASHED or not self.spec.oneoff:
            self._set_state(DynoState.DYNO_STATE_DOWN)
        if self.spec.oneoff:
            # Run once: stay reported (with the exit code) until the controller lets go.
            await self._stop_requested.wait()

    async def _cool_off(self, started_at: float) -> None:
        delay = self._policy.on_exit(started_at, self._ctx.clock())
        if delay:
            self.message = f"restarting in {int(delay)}s (crashed {self._policy.crashes} times)"
            self._ctx.changed()
        with trio.move_on_after(delay):
            await self._stop_requested.wait()
        if not self._stop_requested.is_set():
            self.restarts += 1

    async def _start(self) -> bool:
        spec = self.spec
        self._set_state(DynoState.DYNO_STATE_STARTING)
        try:
            app_dir = await self._app_dir()
            binds = self._volume_binds()
            network = await self._attach_network()
        except (SlugError, NetworkError) as error:
            self._give_start_slot()
            self._say(f"Error R99 (Platform error) -> {error}")
            self._set_state(DynoState.DYNO_STATE_CRASHED, str(error))
            return False
        self._say(f"Starting process with command `{spec.command}`")
        env = dyno_environment(spec, self.port)
        sandbox_spec = SandboxSpec(
            hostname=spec.name,
            argv=dyno_command(spec.command, tty=spec.attach and spec.tty),
            env=env,
            uid=spec.uid,
            app_dir=app_dir,
            app_mount=AppMount.OVERLAY,
            binds=binds,
            limits=resource_limits(spec.size),
            network=network,
        )
        attached = None
        fd = -1
        try:
            if spec.attach:
                controller = self._ctx.controller()
                if controller is None:
                    raise SandboxError("the controller is unreachable, so nobody is attached")
                attached = AttachedIO(spec, controller, self._signal)
                stdin, stdout, stderr = attached.open()
                await self._nursery.start(attached.run)
            else:
                fd = os.open(self.output_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                stdin, stdout, stderr = _devnull(), fd, fd
            self._sandbox = await trio.to_thread.run_sync(
                lambda: self._ctx.driver.start(
                    sandbox_spec,
                    self.directory / "run",
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                )
            )
        except (SandboxError, OSError) as error:
            self._give_start_slot()
            self._say(f"Error R99 (Platform error) -> cannot start the dyno: {error}")
            self._set_state(DynoState.DYNO_STATE_CRASHED, str(error))
            if attached is not None:
                await attached.finish(-1)
            return False
        finally:
            if fd >= 0:
                os.close(fd)
            if attached is not None:
                attached.close_child_fds()
        self._attached = attached
        self.pid = self._sandbox.pid
        self._memory = self._memory_policy(self._sandbox, adopted=False)
        self.save()
        return True

    async def _app_dir(self) -> Path:
        """The unpacked slug; services without one (add-ons) get an empty tree."""
        if self.spec.slug.sha256:
            return await self._ctx.slugs.ensure(self.spec.slug, self.spec.uid)
        empty = self._ctx.slugs.root / ".empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        return empty

    def _volume_binds(self) -> list[Bind]:
        if not self.spec.volume:
            return []
        if self._ctx.volumes is None or not _safe_name(self.spec.volume):
            raise SlugError(f"this node cannot hold volume {self.spec.volume!r}")
        volume = self._ctx.volumes / self.spec.volume
        if not volume.exists():
            volume.mkdir(parents=True, mode=0o700)
            os.chown(volume, self.spec.uid, self.spec.uid)
        return [Bind(volume, "/data", writable=True)]

    def _signal(self, sig: int) -> None:
        if self._sandbox is not None:
            self._sandbox.signal_all(sig)

    async def _supervise(self) -> int:
        """Waits for the process to exit, marking it up once it is ready; returns the exit code."""
        sandbox = self._sandbox
        assert sandbox is not None
        async with trio.open_nursery() as nursery:
            if self.state != DynoState.DYNO_STATE_UP:
                nursery.start_soon(self._watch_boot, sandbox)
            nursery.start_soon(self._terminate_when_asked, sandbox)
            if self.spec.timeout_seconds:
                nursery.start_soon(self._kill_after_timeout, sandbox)
            if self._memory is not None:
                nursery.start_soon(self._watch_memory, sandbox)
            code = await sandbox.wait()
            nursery.cancel_scope.cancel()
        return code

    async def _watch_boot(self, sandbox: SandboxProcess) -> None:
        if self.spec.type != "web":
            self._set_state(DynoState.DYNO_STATE_UP)
            self._give_start_slot()
            return
        timeout = self.spec.boot_timeout_seconds or 60
        with trio.move_on_after(timeout):
            # Nothing announces that a port is listening, so this polls (every 20 ms).
            host = self._dial_host()
            while not await _accepts(host, self.port):  # noqa: ASYNC110
                await trio.sleep(PORT_POLL_INTERVAL)
            path = self.spec.health_check_path
            if path:
                while not await _healthy(host, self.port, path):  # noqa: ASYNC110
                    await trio.sleep(HEALTH_POLL_INTERVAL)
            self._set_state(DynoState.DYNO_STATE_UP)
            self._give_start_slot()
            return
        self._say(
            f"Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {timeout}"
            " seconds of launch"
        )
        self._say("Stopping process with SIGKILL")
        sandbox.kill()

    def _memory_policy(self, sandbox: SandboxProcess, *, adopted: bool) -> MemoryPolicy | None:
        if not self.spec.size.memory_mb or sandbox.cgroup is None:
            return None
        seen = 0
        if adopted:  # OOM kills from before an agent restart were handled (or missed) then
            try:
                usage = sandbox.memory_usage()
            except SandboxError as error:
                log.warning("dyno %s: %s", self.spec.name, error)
                usage = None
            seen = usage.oom_kills if usage is not None else 0
        return MemoryPolicy(self.spec.size.memory_mb * MIB, oom_kills_seen=seen)

    async def _watch_memory(self, sandbox: SandboxProcess) -> None:
        """Heroku's R14/R15: a reading every few seconds, judged by the memory policy."""
        while True:
            await trio.sleep(MEMORY_SAMPLE_INTERVAL)
            if self._check_memory(sandbox):
                return

    def _check_memory(self, sandbox: SandboxProcess) -> bool:
        """One reading (two small cgroup files: microseconds, so on the loop); True once the
        dyno is being killed."""
        if self._memory is None:
            return False
        try:
            usage = sandbox.memory_usage()
        except SandboxError as error:
            log.warning("dyno %s: %s", self.spec.name, error)
            return False
        if usage is None:
            return False
        self.memory_bytes = usage.resident
        verdict = self._memory.observe(
            MemorySample(self._ctx.clock(), usage.resident, usage.oom_kills)
        )
        for line in verdict.lines:
            self._say(line)
        if verdict.kill:
            sandbox.kill()
        return verdict.kill

    async def _kill_after_timeout(self, sandbox: SandboxProcess) -> None:
        await trio.sleep(self.spec.timeout_seconds)
        self._say(
            f"Error R13 (Run timeout) -> the command ran longer than {self.spec.timeout_seconds}s"
        )
        self._say("Stopping process with SIGKILL")
        sandbox.kill()

    async def _terminate_when_asked(self, sandbox: SandboxProcess) -> None:
        """Heroku's stop: SIGTERM to every process, SIGKILL to what remains after the grace."""
        await self._stop_requested.wait()
        self._say("Stopping all processes with SIGTERM")
        sandbox.signal_all(signal.SIGTERM)
        grace = self.spec.stop_grace_seconds or 30
        self._kill_deadline = trio.current_time() + grace
        await trio.sleep(grace)
        self._exit_timeout(sandbox)

    def _exit_timeout(self, sandbox: SandboxProcess) -> None:
        grace = self.spec.stop_grace_seconds or 30
        self._say(
            "Error R12 (Exit timeout) -> At least one process failed to exit within"
            f" {grace} seconds of SIGTERM"
        )
        self._say("Stopping remaining processes with SIGKILL")
        sandbox.kill()

    async def _finish_sandbox(self) -> None:
        """After the command exited: let (or make) the rest of the sandbox end, then clean up."""
        sandbox = self._sandbox
        if sandbox is None:
            return
        if sandbox.is_running() and self._kill_deadline is not None:
            # Stopping: the other processes keep the rest of their grace period.
            with trio.move_on_at(self._kill_deadline):
                await sandbox.wait_until_empty()
            if sandbox.is_running():
                self._exit_timeout(sandbox)
        if sandbox.is_running():
            sandbox.kill()
        with trio.move_on_after(10):
            await sandbox.wait_until_empty()
        try:
            await trio.to_thread.run_sync(sandbox.cleanup)
        except SandboxError as error:
            log.warning("dyno %s: %s", self.spec.name, error)
            return
        self._sandbox = None
        self.pid = 0
        self.save()

    async def stop(self) -> None:
        """Asks the dyno to stop and waits until it is down and cleaned up."""
        self._stop_requested.set()
        await self.done.wait()


async def _accepts(host: str, port: int) -> bool:
    try:
        with trio.move_on_after(1):
            stream = await trio.open_tcp_stream(host, port)
            await stream.aclose()
            return True
    except OSError:
        return False
    return False


async def _healthy(host: str, port: int, path: str) -> bool:
    """Whether GET path answers 2xx (the app's declared health check)."""
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    try:
        with trio.move_on_after(2):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(request)
                head = b""
                while b"\r\n" not in head and len(head) < 1024:
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        break
                    head += chunk
            status = head.split(b" ", 2)
            return len(status) >= 2 and status[1][:1] == b"2"
    except OSError:
        return False
    return False


_devnull_fd: int | None = None


def _devnull() -> int:
    global _devnull_fd  # noqa: PLW0603 - one shared fd for every dyno's stdin
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd
