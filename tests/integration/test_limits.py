"""Resource limits for real: sandboxes in cgroups on this host (cgroup v1 hybrid here, v2 on most
current distributions; the rules of each setup are unit-tested in tests/unit/test_cgroups*.py).

Each test gets its own cgroup parent (`waka-test-<unique>/agent`), so runs in parallel never
meet. The fixtures prove, after every test, that no sandbox process, mount or cgroup is left
behind, and clean up by force before reporting a leak as a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from waka.agent._cgroups import Cgroups, SandboxCgroup
from waka.agent._memory import MemoryPolicy, MemorySample
from waka.agent._sandbox import (
    AppMount,
    BubblewrapDriver,
    BubblewrapProcess,
    BwrapStatus,
    ResourceLimits,
    SandboxProcess,
    SandboxSpec,
)

pytestmark = pytest.mark.root

UID = 10001
DEADLINE = 20.0
MIB = 1024 * 1024
PATH_ENV = {"PATH": "/usr/bin:/bin"}


def wait_for(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


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


def mounts_under(path: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(str(path))]


def cgroup_of(process: SandboxProcess) -> SandboxCgroup:
    assert process.cgroup is not None, "the sandbox runs without a cgroup"
    return process.cgroup


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    """A cgroup parent of this test's own; afterwards it must hold no sandbox cgroup."""
    assert os.geteuid() == 0, "the limits tests need root (CI runs them as root)"
    cgroups = Cgroups.detect(f"waka-test-{os.getpid()}-{secrets.token_hex(4)}/agent")
    cgroups.prepare()
    yield cgroups
    leftovers = cgroups.children()
    for cgroup in leftovers:  # by force, so one failure does not leak into the next runs
        cgroup.kill()
        wait_for(lambda c=cgroup: not c.is_populated(), f"the processes of {cgroup.name} to die")
        cgroup.remove()
    cgroups.remove_parent()
    remaining = [p for d in cgroups.parent_dirs() for p in (d, d.parent) if p.exists()]
    assert not leftovers, f"the test left cgroups behind: {leftovers}"
    assert not remaining, f"the cgroup parent was not removed: {remaining}"


@pytest.fixture
def driver(cgroups: Cgroups) -> BubblewrapDriver:
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is needed: apt-get install bubblewrap"
    return BubblewrapDriver(bwrap=bwrap, log=print, cgroups=cgroups)


class Sandboxes:
    """Starts sandboxes with limits, remembers them, and ends whatever a test left running."""

    def __init__(self, driver: BubblewrapDriver, root: Path) -> None:
        self.driver = driver
        self.root = root
        self.app_dir = root / "app"
        self.app_dir.mkdir()
        os.chown(self.app_dir, UID, UID)
        self.started: list[SandboxProcess] = []

    def start(
        self,
        command: str,
        limits: ResourceLimits,
        *,
        app_mount: AppMount = AppMount.BIND_RW,
    ) -> BubblewrapProcess:
        number = len(self.started) + 1
        spec = SandboxSpec(
            hostname="web.1",
            argv=["bash", "-c", command],
            env=PATH_ENV,
            uid=UID,
            app_dir=self.app_dir,
            app_mount=app_mount,
            limits=limits,
        )
        out = os.open(self.root / f"out{number}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        null = os.open("/dev/null", os.O_RDONLY)
        try:
            process = self.driver.start(
                spec, self.root / f"run{number}", stdin=null, stdout=out, stderr=out
            )
        finally:
            os.close(out)
            os.close(null)
        self.started.append(process)
        return process

    def output(self, number: int) -> str:
        return (self.root / f"out{number}.log").read_text()

    def file(self, name: str) -> Path:
        return self.app_dir / name

    def finish(self, process: SandboxProcess) -> None:
        process.kill()
        wait_empty(process)
        process.cleanup()

    def end_all(self) -> list[str]:
        """Kills and cleans up what is still there; returns what was still running."""
        leaks = []
        for process in self.started:
            if process.is_running():
                leaks.append(f"sandbox {process.run_dir} still runs")
                process.kill()
                wait_empty(process)
            with contextlib.suppress(Exception):
                process.cleanup()
            if mounts := mounts_under(process.run_dir):
                leaks.append(f"mounts {mounts} remain")
        return leaks


@pytest.fixture
def sandboxes(driver: BubblewrapDriver, tmp_path: Path) -> Iterator[Sandboxes]:
    tmp_path.chmod(0o755)  # the unprivileged command reaches its bind-mounted /app through it
    started = Sandboxes(driver, tmp_path)
    yield started
    leaks = started.end_all()
    assert not leaks, f"the test left sandboxes behind: {leaks}"


# --------------------------------------------------------------------------------------------
# joining, limits written, cleanup


def test_every_process_of_the_sandbox_is_in_its_cgroup_in_every_hierarchy(
    sandboxes: Sandboxes,
) -> None:
    process = sandboxes.start("cat /proc/self/cgroup", ResourceLimits(64 * MIB, 50, 1024))
    cgroup = cgroup_of(process)
    assert wait_status(process) == 0
    seen = sandboxes.output(1).splitlines()
    for directory in cgroup.dirs:
        controllers = ",".join(sorted(directory.controllers))
        if directory.version == 2:
            wanted = [line for line in seen if line.startswith("0::")]
        else:
            wanted = [line for line in seen if f":{controllers}:" in line]
        assert wanted, f"no line for {directory.path} in {seen}"
        assert wanted[0].endswith("/" + cgroup.name), (directory.path, wanted)
    sandboxes.finish(process)


def test_limits_are_written_with_the_hard_memory_limit_at_twice_the_quota(
    sandboxes: Sandboxes,
) -> None:
    process = sandboxes.start("exec sleep 1000", ResourceLimits(64 * MIB, 100, 512))
    limits = cgroup_of(process).limits()
    assert limits.memory_max_bytes == 128 * MIB  # R15: twice the quota
    assert limits.pids_max == 102  # the command's 100, plus bwrap and the namespace's pid 1
    assert limits.cpu_shares == 512
    memory = cgroup_of(process).dir_for("memory")
    assert memory is not None
    if memory.version == 1 and (memory.path / "memory.memsw.limit_in_bytes").exists():
        # No swap: memory + swap capped at the same figure.
        assert int((memory.path / "memory.memsw.limit_in_bytes").read_text()) == 128 * MIB
    sandboxes.finish(process)


def test_each_dyno_weighs_its_own_cpu_shares_against_the_rest_of_the_host(
    sandboxes: Sandboxes,
) -> None:
    processes = [
        sandboxes.start("exec sleep 1000", ResourceLimits(64 * MIB, cpu_shares=2048))
        for _ in range(3)
    ]
    cpu = cgroup_of(processes[0]).dir_for("cpu")
    assert cpu is not None
    name = "cpu.shares" if cpu.version == 1 else "cpu.weight"
    expected = "6144" if cpu.version == 1 else "600"
    agent_level, top_level = cpu.path.parent, cpu.path.parent.parent
    assert (agent_level / name).read_text().strip() == expected
    assert (top_level / name).read_text().strip() == expected  # the test's own top level
    for process in processes:
        sandboxes.finish(process)
    assert (agent_level / name).read_text().strip() == ("1024" if cpu.version == 1 else "100")


def test_cleanup_removes_the_cgroup_from_every_hierarchy(sandboxes: Sandboxes) -> None:
    process = sandboxes.start("exit 0", ResourceLimits(64 * MIB, 50, 1024))
    dirs = [directory.path for directory in cgroup_of(process).dirs]
    assert all(path.is_dir() for path in dirs)
    assert wait_status(process) == 0
    wait_empty(process)
    process.cleanup()
    assert [path for path in dirs if path.exists()] == []
    process.cleanup()  # idempotent


def test_sandbox_without_limits_gets_no_cgroup(driver: BubblewrapDriver, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    spec = SandboxSpec(
        hostname="build", argv=["true"], env=PATH_ENV, uid=UID, app_dir=app,
        app_mount=AppMount.BIND_RW,
    )  # fmt: skip
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        process = driver.start(spec, tmp_path / "run", stdin=null, stdout=null, stderr=null)
    finally:
        os.close(null)
    assert process.cgroup is None
    assert process.memory_usage() is None
    assert "cgroup" not in process.record()
    assert wait_status(process) == 0
    wait_empty(process)
    process.cleanup()


# --------------------------------------------------------------------------------------------
# pids


def test_fork_bomb_stops_at_the_pids_limit_and_the_host_keeps_forking(
    sandboxes: Sandboxes,
) -> None:
    process = sandboxes.start("bomb() { bomb | bomb & }; bomb; wait", ResourceLimits(256 * MIB, 40))
    cgroup = cgroup_of(process)
    wait_for(lambda: cgroup.pids_limit_hits() > 0, "the bomb to hit the pids limit")
    current = cgroup.pids_current()
    assert current is not None and current <= 42
    host = subprocess.run(["true"], check=False, timeout=10)  # the host is unaffected
    assert host.returncode == 0

    process.kill()
    wait_empty(process)
    assert not cgroup.is_populated()
    process.cleanup()
    assert not cgroup.exists()


# --------------------------------------------------------------------------------------------
# memory

HOG = textwrap.dedent(
    """
    import sys
    chunks = []
    for step in range(64):  # up to 512 MiB, 8 MiB at a time, every page touched
        chunks.append(bytearray(b"x" * (8 << 20)))
        print((step + 1) * 8, flush=True)
    """
)


def test_memory_hog_is_oom_killed_at_twice_the_quota_and_the_kill_is_visible(
    sandboxes: Sandboxes,
) -> None:
    (sandboxes.app_dir / "hog.py").write_text(HOG)
    process = sandboxes.start("exec python3 /app/hog.py", ResourceLimits(memory_bytes=64 * MIB))
    cgroup = cgroup_of(process)

    assert wait_status(process) == -signal.SIGKILL  # by the kernel's OOM killer
    megabytes = [int(line) for line in sandboxes.output(1).split()]
    assert 64 <= max(megabytes) <= 128, "killed above the quota, at the latest at twice it"
    usage = process.memory_usage()
    assert usage is not None
    assert usage.oom_kills >= 1
    assert usage.limit == 128 * MIB
    # What the dyno's monitor makes of it: R15, and the whole dyno stopped.
    verdict = MemoryPolicy(64 * MIB).observe(MemorySample(0.0, usage.resident, usage.oom_kills))
    assert verdict.kill
    assert verdict.lines[1] == "Error R15 (Memory quota vastly exceeded)"
    wait_empty(process)
    process.cleanup()
    assert not cgroup.exists()


PHASES = textwrap.dedent(
    """
    import os, time

    def phase(name):
        open(f"/app/{name}.ready", "w").close()
        while not os.path.exists(f"/app/{name}.go"):
            time.sleep(0.01)

    heap = bytearray(b"x" * (96 << 20))
    phase("anon")
    with open("/app/on-disk", "wb") as file:
        for _ in range(12):
            file.write(b"d" * (8 << 20))
    phase("disk")
    with open("/tmp/in-tmpfs", "wb") as file:
        for _ in range(8):
            file.write(b"t" * (8 << 20))
    phase("tmpfs")
    """
)


def test_memory_reading_tracks_anon_memory_not_page_cache_and_shows_tmpfs_as_shmem(
    sandboxes: Sandboxes,
) -> None:
    (sandboxes.app_dir / "phases.py").write_text(PHASES)
    process = sandboxes.start("exec python3 /app/phases.py", ResourceLimits(512 * MIB))
    readings = {}
    for phase in ("anon", "disk", "tmpfs"):
        wait_for(sandboxes.file(f"{phase}.ready").exists, f"phase {phase}")
        usage = process.memory_usage()
        assert usage is not None
        readings[phase] = usage
        sandboxes.file(f"{phase}.go").touch()
    assert wait_status(process) == 0

    anon, disk, tmpfs = readings["anon"], readings["disk"], readings["tmpfs"]
    # 96 MiB of heap shows as anonymous memory (plus the interpreter's own few MiB).
    assert 96 * MIB <= anon.anon < 140 * MIB
    assert anon.resident < 140 * MIB
    # 96 MiB written to a file on disk: page cache, charged to the cgroup but not resident.
    assert disk.page_cache - anon.page_cache >= 64 * MIB
    assert disk.charged - anon.charged >= 64 * MIB
    assert abs(disk.resident - anon.resident) < 16 * MIB
    # 64 MiB written to /tmp (tmpfs): shmem, never anon; it counts as resident (see MemoryUsage).
    assert tmpfs.shmem - disk.shmem >= 60 * MIB
    assert abs(tmpfs.anon - disk.anon) < 16 * MIB
    assert tmpfs.resident - disk.resident >= 60 * MIB
    wait_empty(process)
    process.cleanup()


# --------------------------------------------------------------------------------------------
# signals and kill through the cgroup


def test_signal_all_reaches_every_process_but_bwraps_own(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(
        "(setsid sleep 1000 &); sleep 1000 & touch /app/ready; wait", ResourceLimits(64 * MIB)
    )
    wait_for(sandboxes.file("ready").exists, "the sandbox to be ready")
    cgroup = cgroup_of(process)
    wait_for(lambda: len(cgroup.pids()) == 5, "bwrap, pid 1, bash and its two sleeps")

    assert process.signal_all(signal.SIGTERM) == 3  # bash, both sleeps; not bwrap's
    assert wait_status(process) == -signal.SIGTERM
    wait_empty(process)
    process.cleanup()


def test_signal_all_right_after_start_still_reaches_the_command(sandboxes: Sandboxes) -> None:
    for attempt in range(5):
        process = sandboxes.start("exec sleep 1000", ResourceLimits(64 * MIB))
        assert process.signal_all(signal.SIGTERM) == 1, attempt
        assert wait_status(process) == -signal.SIGTERM
        wait_empty(process)
        process.cleanup()


def test_kill_right_after_start_leaves_no_process_and_no_cgroup(sandboxes: Sandboxes) -> None:
    for attempt in range(10):
        process = sandboxes.start("exec sleep 1000", ResourceLimits(64 * MIB))
        cgroup = cgroup_of(process)
        process.kill()  # may land while sh is still joining the cgroup, or bwrap setting up
        assert wait_status(process) == -signal.SIGKILL, attempt
        wait_empty(process)
        assert not cgroup.is_populated()
        process.cleanup()
        assert not cgroup.exists()


def test_kill_ends_double_forked_daemons(sandboxes: Sandboxes) -> None:
    process = sandboxes.start(
        "(setsid sleep 1000 &); (sleep 1000 &); touch /app/ready; exec sleep 1000",
        ResourceLimits(64 * MIB),
    )
    wait_for(sandboxes.file("ready").exists, "the sandbox to be ready")
    cgroup = cgroup_of(process)
    process.kill()
    assert wait_status(process) == -signal.SIGKILL
    wait_empty(process)
    assert cgroup.pids() == []
    process.cleanup()


# --------------------------------------------------------------------------------------------
# agent restarts

OLD_AGENT = """
import json, os, sys
from pathlib import Path
from waka.agent._sandbox import AppMount, ResourceLimits, SandboxSpec, pick_driver

args = json.loads(sys.argv[1])
driver = pick_driver(allow_unisolated=False, log=print, cgroup_parent=args["parent"])
out = os.open(args["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
null = os.open("/dev/null", os.O_RDONLY)
spec = SandboxSpec(
    hostname="web.1", argv=["bash", "-c", args["command"]], env={"PATH": "/usr/bin:/bin"},
    uid=args["uid"], app_dir=Path(args["app_dir"]), app_mount=AppMount.BIND_RW,
    limits=ResourceLimits(memory_bytes=64 << 20, max_pids=50, cpu_shares=512),
)
process = driver.start(spec, Path(args["run_dir"]), stdin=null, stdout=out, stderr=out)
print(json.dumps(process.record()))
"""


def start_in_an_agent_that_then_exits(
    cgroups: Cgroups, sandboxes: Sandboxes, command: str
) -> dict[str, object]:
    arguments = {
        "parent": cgroups.parent,
        "command": command,
        "uid": UID,
        "app_dir": str(sandboxes.app_dir),
        "run_dir": str(sandboxes.root / "old-agent-run"),
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
    return json.loads(finished.stdout.splitlines()[-1])


def test_limits_and_cgroup_survive_an_agent_restart(
    cgroups: Cgroups, driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    record = start_in_an_agent_that_then_exits(
        cgroups, sandboxes, "sleep 1000 & touch /app/ready; wait"
    )
    wait_for(sandboxes.file("ready").exists, "the sandbox to be ready")
    process = driver.adopt(json.loads(json.dumps(record)))
    assert process is not None
    sandboxes.started.append(process)
    assert process.record() == record
    cgroup = cgroup_of(process)
    limits = cgroup.limits()
    assert (limits.memory_max_bytes, limits.pids_max, limits.cpu_shares) == (128 * MIB, 52, 512)
    usage = process.memory_usage()
    assert usage is not None and usage.anon > 0

    assert driver.remove_stale_cgroups([process]) == []  # in use: kept
    assert process.signal_all(signal.SIGTERM) == 2  # bash and sleep
    assert wait_status(process) == -signal.SIGTERM
    wait_empty(process)
    process.cleanup()
    assert not cgroup.exists()


def test_finished_sandbox_record_is_cleaned_up_cgroup_included(
    cgroups: Cgroups, driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    record = start_in_an_agent_that_then_exits(cgroups, sandboxes, "exit 0")
    status = sandboxes.root / "old-agent-run" / "status.json"
    wait_for(lambda: BwrapStatus.read(status).exit_code is not None, "the sandbox to finish")
    wait_for(lambda: driver.adopt(record) is None, "the sandbox to be gone")
    driver.cleanup(record)
    assert not Path(str(record["run_dir"])).exists()
    assert cgroups.children() == []


def test_stale_cgroups_are_killed_and_removed_at_agent_start(
    cgroups: Cgroups, driver: BubblewrapDriver, sandboxes: Sandboxes
) -> None:
    kept = sandboxes.start("exec sleep 1000", ResourceLimits(64 * MIB))
    # A crash between creating a cgroup and recording its sandbox leaves this behind:
    stale = cgroups.create("web.2-deadbeef", ResourceLimits(64 * MIB).for_cgroup())
    joiner = "echo $$ > $0 && exec sleep 1000"
    orphan = subprocess.Popen(["/bin/sh", "-c", joiner, str(stale.procs_files[0])])
    try:
        wait_for(lambda: stale.pids() == [orphan.pid], "the orphan to join the stale cgroup")

        assert driver.remove_stale_cgroups([kept]) == ["web.2-deadbeef"]

        assert orphan.wait(DEADLINE) == -signal.SIGKILL
        assert not stale.exists()
        assert [c.name for c in cgroups.children()] == [cgroup_of(kept).name]
    finally:
        orphan.kill()
        orphan.wait()
    sandboxes.finish(kept)
