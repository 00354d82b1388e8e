"""The sandbox drivers for real: bubblewrap as root (CI runs as root), and the plain driver.

Every test leaves nothing behind: the `sandboxes` fixture checks, after the test, that no process
of any sandbox it started remains (by PID namespace) and that no overlay stays mounted, and
reports either as a failure after cleaning up by force.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
import pytest
import trio

from waka.agent._sandbox import (
    EXIT_STATUS_UNKNOWN,
    AppMount,
    Bind,
    BubblewrapDriver,
    BubblewrapProcess,
    BwrapStatus,
    Driver,
    PlainDriver,
    PlainProcess,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
    pick_driver,
    unmount_all,
)

pytestmark = pytest.mark.root

UID = 10001
DEADLINE = 10.0
PATH_ENV = {"PATH": "/usr/bin:/bin"}


# --------------------------------------------------------------------------------------------
# helpers


def wait_for(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def wait_status(process: SandboxProcess, timeout: float = DEADLINE) -> int:
    async def main() -> int:
        with trio.fail_after(timeout):
            return await process.wait()

    return trio.run(main)


def wait_empty(process: SandboxProcess, timeout: float = DEADLINE) -> None:
    async def main() -> None:
        with trio.fail_after(timeout):
            await process.wait_until_empty()

    trio.run(main)


def processes_in_pid_namespace(namespace: int) -> list[int]:
    """Live processes of a sandbox. Zombies are left out: they hold no resources, and reaping
    the orphaned ones is the host init's job (this VM's init reaps lazily)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                in_namespace = (entry / "ns" / "pid").stat().st_ino == namespace
                if in_namespace and psutil.Process(int(entry.name)).status() != "zombie":
                    found.append(int(entry.name))
            except psutil.NoSuchProcess:
                continue
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def mounts_under(path: Path) -> list[str]:
    mount_points = [
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]
    return [point for point in mount_points if point.startswith(str(path))]


class Sandboxes:
    """Starts sandboxes for a test and remembers enough to prove that nothing leaked."""

    def __init__(self, driver: Driver, root: Path) -> None:
        self.driver = driver
        self.root = root
        self.app_dir = root / "app"
        self.app_dir.mkdir()
        (self.app_dir / "shipped.txt").write_text("from the slug\n")
        os.chown(self.app_dir, UID, UID)
        os.chown(self.app_dir / "shipped.txt", UID, UID)
        self._outputs: dict[int, Path] = {}
        self._run_dirs: list[Path] = []
        self._namespaces: dict[Path, int] = {}
        self._plain: list[PlainProcess] = []

    def start(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] = PATH_ENV,
        app_mount: AppMount = AppMount.OVERLAY,
        hostname: str = "web.1",
        binds: Sequence[Bind] = (),
        track: bool = True,
    ) -> SandboxProcess:
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        number = len(self._outputs) + 1
        output, run_dir = self.root / f"out{number}.log", self.root / f"run{number}"
        spec = SandboxSpec(
            hostname=hostname,
            argv=argv,
            env=env,
            uid=UID,
            app_dir=self.app_dir,
            app_mount=app_mount,
            binds=binds,
        )
        out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open("/dev/null", os.O_RDONLY)
        try:
            process = self.driver.start(spec, run_dir, stdin=null, stdout=out, stderr=out)
        finally:
            os.close(out)
            os.close(null)
        self._outputs[process.pid] = output
        if isinstance(process, BubblewrapProcess):
            if track:
                self.track(run_dir)
            else:
                self._run_dirs.append(run_dir)  # still checked for mounts left behind
        elif isinstance(process, PlainProcess):
            self._plain.append(process)
        return process

    def track(self, run_dir: Path) -> None:
        """Remember the sandbox's PID namespace (from bwrap's status file) for the leak check."""
        self._run_dirs.append(run_dir)
        status_path = run_dir / "status.json"
        wait_for(
            lambda: BwrapStatus.read(status_path).pid_namespace is not None,
            "bwrap to report the sandbox",
        )
        namespace = BwrapStatus.read(status_path).pid_namespace
        assert namespace is not None
        self._namespaces[run_dir] = namespace

    def output(self, process: SandboxProcess) -> str:
        return self._outputs[process.pid].read_text()

    def init_pid(self, process: SandboxProcess) -> int:
        child_pid = BwrapStatus.read(process.run_dir / "status.json").child_pid
        assert child_pid is not None
        return child_pid

    def finish(self, process: SandboxProcess) -> None:
        """The supervisor's teardown: kill what remains, wait until empty, clean up."""
        process.kill()
        wait_empty(process)
        process.cleanup()

    def leaks(self) -> list[str]:
        found = []
        for run_dir in self._run_dirs:
            namespace = self._namespaces.get(run_dir)
            if namespace is None:
                namespace = BwrapStatus.read(run_dir / "status.json").pid_namespace
            if namespace is not None and (pids := processes_in_pid_namespace(namespace)):
                found.append(f"processes {pids} of {run_dir} are still running")
            if mounts := mounts_under(run_dir):
                found.append(f"mounts {mounts} of {run_dir} remain")
        found += [f"plain process {p.pid} still running" for p in self._plain if p.is_running()]
        return found

    def force_cleanup(self) -> None:
        for run_dir in self._run_dirs:
            namespace = self._namespaces.get(run_dir)
            if namespace is None:  # untracked: learn it now, if bwrap got that far
                namespace = BwrapStatus.read(run_dir / "status.json").pid_namespace
            if namespace is not None:
                for pid in processes_in_pid_namespace(namespace):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                wait_for(lambda ns=namespace: not processes_in_pid_namespace(ns), "forced kill")
            unmount_all(run_dir / "app")
        for process in self._plain:
            process.kill()


@pytest.fixture
def driver() -> BubblewrapDriver:
    assert os.geteuid() == 0, "the sandbox tests need root (CI runs them as root)"
    logged: list[str] = []
    driver = pick_driver(allow_unisolated=False, log=logged.append)
    assert isinstance(driver, BubblewrapDriver), logged
    return driver


@pytest.fixture
def sandboxes(driver: BubblewrapDriver, tmp_path: Path) -> Iterator[Sandboxes]:
    started = Sandboxes(driver, tmp_path)
    yield started
    leaks = started.leaks()
    started.force_cleanup()
    assert not leaks, f"the test left sandboxes behind: {leaks}"


# --------------------------------------------------------------------------------------------
# isolation


def test_sandbox_sees_only_its_own_processes(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(["ps", "-e", "-o", "pid=,comm="])
    assert wait_status(process) == 0
    seen = {tuple(line.split()) for line in sandboxes.output(process).splitlines()}
    assert seen == {("1", "bwrap"), ("2", "ps")}
    sandboxes.finish(process)


def test_system_dirs_and_root_are_read_only(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(
        "for path in /usr/waka-probe /etc/waka-probe /waka-probe; do"
        ' touch "$path" 2>/dev/null && echo "WROTE $path"; done; echo checked'
    )
    assert wait_status(process) == 0
    assert sandboxes.output(process) == "checked\n"
    assert not Path("/usr/waka-probe").exists()
    sandboxes.finish(process)


def test_command_runs_unprivileged_without_capabilities_or_new_privileges(
    sandboxes: Sandboxes,
) -> None:
    process = sandboxes.start(["cat", "/proc/self/status"])
    assert wait_status(process) == 0
    status = dict(
        line.split(":", 1) for line in sandboxes.output(process).splitlines() if ":" in line
    )
    assert status["Uid"].split() == [str(UID)] * 4
    assert status["Gid"].split() == [str(UID)] * 4
    assert status["Groups"].strip() == ""
    for capability_set in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capability_set], 16) == 0, capability_set
    assert status["NoNewPrivs"].strip() == "1"
    sandboxes.finish(process)


def test_hostname_is_the_dyno_name(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(["uname", "-n"], hostname="worker.3")
    assert wait_status(process) == 0
    assert sandboxes.output(process) == "worker.3\n"
    assert os.uname().nodename != "worker.3"
    sandboxes.finish(process)


def test_environment_is_exactly_what_was_given(sandboxes: Sandboxes) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DYNO": "web.1",
        "PORT": "5000",
        "MULTI_LINE": "one\ntwo",
        "EMPTY": "",
    }
    os.environ["WAKA_AGENT_SECRET"] = "must not leak"
    try:
        process = sandboxes.start(["env", "-0"], env=env)
    finally:
        del os.environ["WAKA_AGENT_SECRET"]
    assert wait_status(process) == 0
    entries = sandboxes.output(process).split("\0")[:-1]
    # bwrap adds PWD (the working directory), as any shell would; nothing else is added.
    assert dict(entry.split("=", 1) for entry in entries) == {**env, "PWD": "/app"}
    sandboxes.finish(process)


def test_no_agent_file_descriptor_leaks_into_the_sandbox(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    marker = tmp_path / "agent-only-file"
    marker.write_text("secret")
    inherited = os.open(marker, os.O_RDONLY)
    os.set_inheritable(inherited, True)  # as if the agent had been started with an open fd
    try:
        # `; true` keeps bash alive (no exec into ls), so ls lists bash's fds, not its own.
        process = sandboxes.start("ls -l /proc/$$/fd; true")
    finally:
        os.close(inherited)
    assert wait_status(process) == 0
    listing = sandboxes.output(process)
    assert "agent-only-file" not in listing
    fds = {line.split(" -> ")[0].split()[-1] for line in listing.splitlines() if " -> " in line}
    assert fds <= {"0", "1", "2", "255"}, listing  # bash may keep 255 for itself
    sandboxes.finish(process)


def test_tmp_is_writable_and_private(sandboxes: Sandboxes, tmp_path: Path) -> None:
    host_file = Path("/tmp") / f"waka-host-only-{tmp_path.name}-{os.getpid()}"
    host_file.write_text("host")
    try:
        process = sandboxes.start(
            f"test ! -e {host_file} && echo private; echo hi > {host_file}.inside && echo wrote;"
            " stat -c %a /tmp"
        )
        assert wait_status(process) == 0
    finally:
        host_file.unlink()
    assert sandboxes.output(process) == "private\nwrote\n1777\n"
    assert not Path(f"{host_file}.inside").exists()
    sandboxes.finish(process)


def test_app_writes_land_in_the_private_layer_and_vanish_at_cleanup(
    sandboxes: Sandboxes,
) -> None:
    lower = sandboxes.app_dir
    process = sandboxes.start(
        "cat /app/shipped.txt; echo new > /app/created.txt; echo changed > /app/shipped.txt"
    )
    assert wait_status(process) == 0
    assert sandboxes.output(process) == "from the slug\n"
    upper = process.run_dir / "upper"
    assert (upper / "created.txt").read_text() == "new\n"
    assert (upper / "shipped.txt").read_text() == "changed\n"
    assert sorted(path.name for path in lower.iterdir()) == ["shipped.txt"]
    assert (lower / "shipped.txt").read_text() == "from the slug\n"

    sandboxes.finish(process)
    assert not process.run_dir.exists()
    assert mounts_under(process.run_dir) == []
    process.cleanup()  # idempotent


def test_dynos_of_one_slug_each_see_only_their_own_writes(sandboxes: Sandboxes) -> None:
    first = sandboxes.start("echo web.1 > /app/mine && exec sleep 1000")
    wait_for((first.run_dir / "upper" / "mine").exists, "the first dyno to write")
    second = sandboxes.start("test -e /app/mine && echo shared || echo private")
    assert wait_status(second) == 0
    assert sandboxes.output(second) == "private\n"
    assert not (sandboxes.app_dir / "mine").exists()
    sandboxes.finish(first)
    sandboxes.finish(second)


def test_build_sandbox_writes_app_and_cache_but_not_read_only_binds(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    cache, env_dir = tmp_path / "cache", tmp_path / "env"
    for path in (cache, env_dir):
        path.mkdir()
        os.chown(path, UID, UID)
    (env_dir / "SECRET").write_text("s3cr3t")
    process = sandboxes.start(
        "echo built > /app/built && echo cached > /cache/layer && cat /env/SECRET && echo;"
        " touch /env/new 2>/dev/null || echo env-read-only",
        app_mount=AppMount.BIND_RW,
        binds=[Bind(cache, "/cache", writable=True), Bind(env_dir, "/env")],
    )
    assert wait_status(process) == 0
    assert sandboxes.output(process) == "s3cr3t\nenv-read-only\n"
    assert (sandboxes.app_dir / "built").read_text() == "built\n"
    assert (cache / "layer").read_text() == "cached\n"
    sandboxes.finish(process)


# --------------------------------------------------------------------------------------------
# exit statuses, signals, kill, zombies


def test_wait_returns_the_exit_code(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("exit 3")
    assert wait_status(process) == 3
    assert wait_status(process) == 3  # asking again gives the same answer
    sandboxes.finish(process)


def test_wait_reports_death_by_signal_as_minus_the_signal(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("kill -TERM $$")
    assert wait_status(process) == -signal.SIGTERM
    sandboxes.finish(process)


def test_kill_ends_every_process_and_wait_reports_sigkill(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("sleep 1000 & (setsid sleep 1000 &); touch /app/ready; sleep 1000")
    ready = process.run_dir / "upper" / "ready"
    wait_for(ready.exists, "the sandbox to start its sleepers")
    init_pid = sandboxes.init_pid(process)
    wait_for(lambda: len(psutil.Process(init_pid).children(recursive=True)) >= 3, "sleepers")
    assert process.is_running()

    process.kill()
    assert wait_status(process) == -signal.SIGKILL
    wait_empty(process)
    assert not process.is_running()
    process.cleanup()


def test_signal_all_reaches_trapping_grandchild_and_double_forked_daemon(
    sandboxes: Sandboxes,
) -> None:
    app = sandboxes.app_dir
    (app / "trapper.sh").write_text(
        'trap "echo graceful > /app/$1.term; exit 0" TERM\n'
        "touch /app/$1.ready\n"
        "while :; do sleep 0.02; done\n"
    )
    process = sandboxes.start(
        "sh /app/trapper.sh grandchild & (setsid sh /app/trapper.sh daemon &); wait",
        app_mount=AppMount.BIND_RW,
    )
    for name in ("grandchild", "daemon"):
        wait_for((app / f"{name}.ready").exists, f"{name} to be ready")
    init_pid = sandboxes.init_pid(process)
    daemon = next(
        child for child in psutil.Process(init_pid).children() if child.cmdline()[-1:] == ["daemon"]
    )
    assert daemon.ppid() == init_pid, "the daemon must be orphaned (double fork)"

    delivered = process.signal_all(signal.SIGTERM)

    assert delivered >= 3  # main bash, grandchild, daemon (and whatever sleeps they run)
    assert wait_status(process) == -signal.SIGTERM
    wait_empty(process)
    assert (app / "grandchild.term").read_text() == "graceful\n"
    assert (app / "daemon.term").read_text() == "graceful\n"
    process.cleanup()


def test_signal_all_right_after_start_still_reaches_the_command(sandboxes: Sandboxes) -> None:
    for attempt in range(5):
        process = sandboxes.start("exec sleep 1000")  # returns once bwrap has cloned pid 1
        assert process.signal_all(signal.SIGTERM) == 1, attempt
        assert wait_status(process) == -signal.SIGTERM
        wait_empty(process)
        process.cleanup()


def test_signal_all_never_signals_bwraps_own_pid_1(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("touch /app/ready; sleep 1000 & wait")
    wait_for((process.run_dir / "upper" / "ready").exists, "the sandbox to be ready")
    init = psutil.Process(sandboxes.init_pid(process))
    wait_for(lambda: len(init.children(recursive=True)) == 2, "bash and its sleep")

    assert process.signal_all(signal.SIGUSR1) == 2  # bash and sleep; not bwrap's pid 1
    assert wait_status(process) == -signal.SIGUSR1
    wait_empty(process)
    process.cleanup()


def test_kill_right_after_start_leaves_nothing(sandboxes: Sandboxes) -> None:
    # kill() may land before bwrap has even created the sandbox's pid 1: still nothing survives.
    for attempt in range(10):
        process = sandboxes.start("exec sleep 1000", track=False)
        process.kill()
        assert wait_status(process) == -signal.SIGKILL, attempt
        wait_empty(process)
        namespace = BwrapStatus.read(process.run_dir / "status.json").pid_namespace
        if namespace is not None:
            assert processes_in_pid_namespace(namespace) == []
        process.cleanup()
        assert mounts_under(process.run_dir) == []


def test_concurrent_waiters_all_get_the_exit_status(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(
        "while [ ! -e /app/go ]; do sleep 0.01; done; exit 5", app_mount=AppMount.BIND_RW
    )

    async def main() -> list[int]:
        statuses: list[int] = []
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(3):

                    async def waiter() -> None:
                        await process.wait_until_empty()
                        statuses.append(await process.wait())

                    nursery.start_soon(waiter)
                await trio.sleep(0.05)  # let the waiters park on the pidfds
                (sandboxes.app_dir / "go").touch()
        return statuses

    assert trio.run(main) == [5, 5, 5]
    process.cleanup()


def test_orphans_are_reaped_inside_the_sandbox(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(
        "(sh -c 'exit 0' &); (sh -c 'exit 0' &); touch /app/spawned; exec sleep 1000"
    )
    wait_for((process.run_dir / "upper" / "spawned").exists, "the orphans to be spawned")
    init = psutil.Process(sandboxes.init_pid(process))

    def only_sleep_remains() -> bool:
        descendants = init.children(recursive=True)
        return [p.name() for p in descendants] == ["sleep"]

    wait_for(only_sleep_remains, "pid 1 to reap the orphans (no zombies)")
    sandboxes.finish(process)


def test_cleanup_refuses_while_processes_remain(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("sleep 1000")
    with pytest.raises(SandboxError, match="still has running processes"):
        process.cleanup()
    assert process.run_dir.exists()
    sandboxes.finish(process)


def test_command_exit_leaves_its_background_processes_until_killed(
    sandboxes: Sandboxes,
) -> None:
    process = sandboxes.start("(setsid sleep 1000 &); exit 4")
    assert wait_status(process) == 4
    assert process.is_running(), "the orphaned sleep still runs after the command exited"
    process.kill()
    wait_empty(process)
    assert not process.is_running()
    process.cleanup()


def test_start_fails_cleanly_when_bwrap_cannot_build_the_sandbox(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    process = sandboxes.start(
        "true", app_mount=AppMount.BIND_RW, binds=[Bind(tmp_path / "missing", "/cache")]
    )
    assert wait_status(process) == 1
    assert "missing" in sandboxes.output(process)
    sandboxes.finish(process)


# --------------------------------------------------------------------------------------------
# adoption after an agent restart

OLD_AGENT = """
import json, os, sys
from pathlib import Path
from waka.agent._sandbox import AppMount, SandboxSpec, pick_driver

args = json.loads(sys.argv[1])
driver = pick_driver(allow_unisolated=False, log=print)
out = os.open(args["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
null = os.open("/dev/null", os.O_RDONLY)
spec = SandboxSpec(
    hostname="web.1", argv=args["argv"], env={"PATH": "/usr/bin:/bin"}, uid=args["uid"],
    app_dir=Path(args["app_dir"]), app_mount=AppMount.BIND_RW,
)
process = driver.start(spec, Path(args["run_dir"]), stdin=null, stdout=out, stderr=out)
print(json.dumps(process.record()))
"""


def start_in_an_agent_that_then_exits(sandboxes: Sandboxes, command: str) -> dict[str, object]:
    """Start a sandbox from another process that exits right away, like a restarted agent."""
    run_dir = sandboxes.root / "old-agent-run"
    arguments = {
        "argv": ["bash", "-c", command],
        "uid": UID,
        "app_dir": str(sandboxes.app_dir),
        "run_dir": str(run_dir),
        "output": str(sandboxes.root / "old-agent.log"),
    }
    finished = subprocess.run(
        [sys.executable, "-c", OLD_AGENT, json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    sandboxes.track(run_dir)
    record = json.loads(finished.stdout.splitlines()[-1])
    assert psutil.Process(record["pid"]).ppid() != os.getpid()
    return record


def test_adopted_sandbox_reports_its_exit_code_without_being_our_child(
    driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    go = sandboxes.app_dir / "go"
    record = start_in_an_agent_that_then_exits(
        sandboxes, "while [ ! -e /app/go ]; do sleep 0.01; done; exit 7"
    )
    process = driver.adopt(json.loads(json.dumps(record)))
    assert process is not None
    assert process.is_running()
    assert process.record() == record

    go.touch()
    assert wait_status(process) == 7
    wait_empty(process)
    process.cleanup()


def test_adopted_sandbox_can_be_signalled_and_reports_the_signal(
    driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    record = start_in_an_agent_that_then_exits(
        sandboxes, "touch /app/ready; sleep 1000 & (setsid sleep 1000 &); wait"
    )
    wait_for((sandboxes.app_dir / "ready").exists, "the adopted sandbox to be ready")
    process = driver.adopt(record)
    assert process is not None
    wait_for(lambda: len(psutil.Process(sandboxes.init_pid(process)).children(True)) == 3, "ps")

    assert process.signal_all(signal.SIGTERM) == 3
    assert wait_status(process) == -signal.SIGTERM
    wait_empty(process)
    process.cleanup()


def test_forgotten_sandbox_is_adopted_again_in_the_same_agent(
    driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    record = sandboxes.start("exec sleep 1000").record()  # the first object is forgotten
    process = driver.adopt(record)
    assert process is not None
    assert process.signal_all(signal.SIGTERM) >= 1
    assert wait_status(process) == -signal.SIGTERM
    sandboxes.finish(process)


def test_adopt_of_a_finished_sandbox_returns_none_and_it_can_still_be_cleaned(
    driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    process = sandboxes.start("exit 0")
    record = process.record()
    assert wait_status(process) == 0
    wait_empty(process)
    del process

    assert driver.adopt(record) is None
    driver.cleanup(record)
    assert not Path(str(record["run_dir"])).exists()


def test_adopt_is_not_fooled_by_reused_pids(driver: BubblewrapDriver, sandboxes: Sandboxes) -> None:
    process = sandboxes.start("exit 0")
    record = process.record()
    assert wait_status(process) == 0
    wait_empty(process)

    # bwrap's pid now belongs to a live process that is not the sandbox:
    assert driver.adopt({**record, "pid": os.getpid()}) is None
    # and so does the pid bwrap reported for the sandbox's pid 1:
    status_path = process.run_dir / "status.json"
    status_path.write_text(
        status_path.read_text().replace(
            f'"child-pid": {sandboxes.init_pid(process)}', f'"child-pid": {os.getpid()}'
        )
    )
    assert sandboxes.init_pid(process) == os.getpid()
    assert driver.adopt(record) is None
    process.cleanup()


def test_adopt_refuses_a_record_of_another_driver(driver: BubblewrapDriver) -> None:
    with pytest.raises(ValueError, match="record of driver 'plain'"):
        driver.adopt({"driver": "plain", "pid": 1})


# --------------------------------------------------------------------------------------------
# the plain (development) driver


@pytest.fixture
def plain() -> Iterator[Sandboxes]:
    """Plain processes run as UID on the host itself, so their app dir must be reachable by
    UID (pytest's tmp dirs are root-only)."""
    assert os.geteuid() == 0, "the sandbox tests need root (CI runs them as root)"
    root = Path(tempfile.mkdtemp(prefix="waka-plain-test-"))
    root.chmod(0o711)
    started = Sandboxes(PlainDriver(warning="test"), root)
    try:
        yield started
        leaks = started.leaks()
        started.force_cleanup()
        assert not leaks, f"the test left processes behind: {leaks}"
    finally:
        shutil.rmtree(root)


def test_plain_driver_runs_in_app_dir_with_exactly_the_given_env(plain: Sandboxes) -> None:
    env = {**PATH_ENV, "A": "1", "MULTI_LINE": "x\ny"}
    environment = plain.start(["env", "-0"], env=env)
    where = plain.start("pwd; id -u")
    assert wait_status(environment) == 0
    assert wait_status(where) == 0
    entries = plain.output(environment).split("\0")[:-1]
    assert dict(entry.split("=", 1) for entry in entries) == env
    # A root agent still drops privileges, even without isolation.
    assert plain.output(where) == f"{plain.app_dir}\n{UID}\n"
    for process in (environment, where):
        wait_empty(process)
        process.cleanup()


def test_plain_driver_signals_and_kills_the_whole_session(plain: Sandboxes) -> None:
    process = plain.start("sleep 1000 & (sleep 1000 &); echo started > ready; wait")
    wait_for((plain.app_dir / "ready").exists, "the plain process to start")
    wait_for(lambda: process.signal_all(0) == 3, "bash, its child and the orphaned sleep")
    assert process.signal_all(signal.SIGTERM) == 3
    assert wait_status(process) == -signal.SIGTERM
    wait_empty(process)
    process.cleanup()


def test_plain_driver_adoption_cannot_know_the_exit_status(plain: Sandboxes) -> None:
    process = plain.start("sleep 1000")
    adopted = plain.driver.adopt(process.record())
    assert adopted is not None
    process.kill()
    # The parent (which reaps first here) knows; an adopter, not being the parent, cannot.
    assert wait_status(process) == -signal.SIGKILL
    assert wait_status(adopted) == EXIT_STATUS_UNKNOWN
    wait_empty(process)
    process.cleanup()
    assert plain.driver.adopt(process.record()) is None


def test_plain_driver_refuses_binds_it_cannot_mount(plain: Sandboxes, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="cannot mount /cache"):
        plain.start("true", binds=[Bind(tmp_path, "/cache")])
