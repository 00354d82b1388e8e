"""Sandbox cgroups against a fake cgroup file system that keeps the kernel's rules: control files
appear only for attached (v1) or enabled (v2) controllers, cgroup2 shares a controller with its
children only when it holds no processes, and v1 keeps memory+swap >= memory.

The real thing (this host's v1 hybrid) is tested in tests/integration/test_limits.py; cgroup2
with controllers cannot be mounted beside v1 ones, so its rules are checked here.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from waka.agent._cgroups import (
    CgroupDir,
    CgroupError,
    CgroupLayout,
    CgroupLimits,
    Cgroups,
    Hierarchy,
    MemoryUsage,
    SandboxCgroup,
    cpu_weight_from_shares,
)

MIB = 1024 * 1024
V1_UNLIMITED = "9223372036854771712"


class FakeCgroupFS:
    """Cgroup hierarchies in memory: {directory: {file: content written}}.

    Which control files a directory has is worked out on every access, as the kernel does: in
    cgroup2 a child's cgroup.controllers (and so its files) follow the parent's
    cgroup.subtree_control at any time; in v1 every directory has its hierarchy's files.
    """

    def __init__(self) -> None:
        self.values: dict[Path, dict[str, str]] = {}
        self.version: dict[Path, int] = {}  # mount point -> version
        self.available: dict[Path, frozenset[str]] = {}  # mount point -> controllers
        self.writes: list[tuple[Path, str]] = []

    # ------------------------------------------------------------ building hierarchies

    def mount_v2(self, at: str, available: str) -> Hierarchy:
        return self._mount(Path(at), 2, frozenset(available.split()))

    def mount_v1(self, at: str, *controllers: str) -> Hierarchy:
        return self._mount(Path(at), 1, frozenset(controllers))

    def _mount(self, mount: Path, version: int, controllers: frozenset[str]) -> Hierarchy:
        self.version[mount] = version
        self.available[mount] = controllers
        self.values[mount] = {}
        return Hierarchy(mount, version, controllers)

    def set(self, directory: str | Path, name: str, value: str) -> None:
        """What the kernel would show (usage, events...), set by a test."""
        self.values[Path(directory)][name] = value

    def controllers_of(self, directory: Path) -> frozenset[str]:
        if directory in self.version:
            return self.available[directory]
        mount = self._mount_of(directory)
        if self.version[mount] == 1:
            return self.available[mount]
        return frozenset(self._get(directory.parent, "cgroup.subtree_control").split())

    def _mount_of(self, path: Path) -> Path:
        return next(m for m in self.version if path == m or path.is_relative_to(m))

    def _defaults(self, directory: Path) -> dict[str, str]:
        version = self.version[self._mount_of(directory)]
        defaults = {"cgroup.procs": ""}
        if version == 2:
            defaults.update(
                {
                    "cgroup.controllers": " ".join(sorted(self.controllers_of(directory))),
                    "cgroup.subtree_control": "",
                }
            )
            if directory not in self.version:
                defaults.update({"cgroup.kill": "", "cgroup.events": "populated 0\n"})
        if directory not in self.version:  # the root has no controller files of its own
            table = V2_FILES if version == 2 else V1_FILES
            for controller in self.controllers_of(directory):
                defaults.update(table.get(controller, {}))
        return defaults

    def _get(self, directory: Path, name: str) -> str:
        defaults = self._defaults(directory)
        if name not in defaults:
            raise FileNotFoundError(
                errno.ENOENT, "No such file or directory", f"{directory}/{name}"
            )
        return self.values[directory].get(name, defaults[name])

    # ------------------------------------------------------------ CgroupFS

    def read(self, path: Path) -> str:
        if path.parent not in self.values:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        return self._get(path.parent, path.name)

    def write(self, path: Path, value: str) -> None:
        directory = path.parent
        self.read(path)  # must exist
        self.writes.append((path, value))
        if path.name == "cgroup.subtree_control":
            self._enable(directory, value)
        elif path.name == "memory.memsw.limit_in_bytes" and int(value) < int(
            self._get(directory, "memory.limit_in_bytes")
        ):
            raise OSError(errno.EINVAL, "Invalid argument")
        else:
            self.values[directory][path.name] = value

    def _enable(self, directory: Path, value: str) -> None:
        wanted = {word[1:] for word in value.split()}
        if not wanted <= self.controllers_of(directory):
            raise OSError(errno.ENOENT, "No such file or directory")
        if self._get(directory, "cgroup.procs").split() and directory not in self.version:
            raise OSError(errno.EBUSY, "Device or resource busy")
        enabled = set(self._get(directory, "cgroup.subtree_control").split()) | wanted
        self.values[directory]["cgroup.subtree_control"] = " ".join(sorted(enabled))

    def exists(self, path: Path) -> bool:
        if path in self.values:
            return True
        return path.parent in self.values and path.name in self._defaults(path.parent)

    def mkdir(self, path: Path) -> None:
        if path in self.values:
            return
        if path.parent not in self.values:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        self.values[path] = {}

    def rmdir(self, path: Path) -> None:
        if path not in self.values:
            return
        children = [d for d in self.values if d.parent == path]
        if children or self._get(path, "cgroup.procs").split():
            raise OSError(errno.EBUSY, "Device or resource busy")
        del self.values[path]

    def subdirs(self, path: Path) -> list[str]:
        return sorted(d.name for d in self.values if d.parent == path)


V2_FILES = {
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.swap.current": "0",
        "memory.stat": "anon 0\nfile 0\nshmem 0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "cpu": {"cpu.weight": "100"},
}
V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.swappiness": "60",
        "memory.usage_in_bytes": "0",
        "memory.stat": "cache 0\nrss 0\nshmem 0\ntotal_cache 0\ntotal_rss 0\ntotal_shmem 0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "cpu": {"cpu.shares": "1024"},
}

LIMITS = CgroupLimits(memory_max_bytes=1024 * MIB, pids_max=258, cpu_shares=512)


@pytest.fixture
def fs() -> FakeCgroupFS:
    return FakeCgroupFS()


def unified(fs: FakeCgroupFS, available: str = "cpuset cpu io memory pids") -> Cgroups:
    layout = CgroupLayout.from_hierarchies([fs.mount_v2("/sys/fs/cgroup", available)])
    return Cgroups(layout, "waka/agent1", fs=fs)


def hybrid(fs: FakeCgroupFS) -> Cgroups:
    layout = CgroupLayout.from_hierarchies(
        [
            fs.mount_v1("/sys/fs/cgroup/cpu", "cpu"),
            fs.mount_v1("/sys/fs/cgroup/memory", "memory"),
            fs.mount_v1("/sys/fs/cgroup/pids", "pids"),
            fs.mount_v2("/sys/fs/cgroup/unified", "hugetlb"),
        ]
    )
    return Cgroups(layout, "waka/agent1", fs=fs)


def files(fs: FakeCgroupFS, path: str) -> dict[str, str]:
    """Every file of a directory with its content, as `cat` would show them."""
    directory = Path(path)
    return {name: fs.read(directory / name) for name in fs._defaults(directory)}


# --------------------------------------------------------------------------------------------
# cgroup v2


def test_v2_prepare_enables_the_controllers_from_the_root_down_to_the_parent(
    fs: FakeCgroupFS,
) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    for level in ("/sys/fs/cgroup", "/sys/fs/cgroup/waka", "/sys/fs/cgroup/waka/agent1"):
        assert files(fs, level)["cgroup.subtree_control"] == "cpu memory pids", level
    cgroups.prepare()  # again, as at every agent start: no harm


def test_v2_sandbox_gets_one_directory_with_every_limit(fs: FakeCgroupFS) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    assert [d.path for d in cgroup.dirs] == [Path("/sys/fs/cgroup/waka/agent1/web.1-0a1b2c3d")]
    written = files(fs, "/sys/fs/cgroup/waka/agent1/web.1-0a1b2c3d")
    assert written["memory.max"] == str(1024 * MIB)
    assert written["memory.swap.max"] == "0"
    assert written["pids.max"] == "258"
    assert written["cpu.weight"] == "50"
    assert cgroup.limits() == LIMITS
    assert cgroup.procs_files == [Path("/sys/fs/cgroup/waka/agent1/web.1-0a1b2c3d/cgroup.procs")]


def test_v2_parent_inside_a_cgroup_with_processes_is_refused_with_the_reason(
    fs: FakeCgroupFS,
) -> None:
    cgroups = unified(fs)
    fs.mkdir(Path("/sys/fs/cgroup/waka"))
    fs.set("/sys/fs/cgroup/waka", "cgroup.procs", "4242\n")  # e.g. the agent itself
    with pytest.raises(CgroupError, match="holds processes itself"):
        cgroups.prepare()


def test_v2_without_memory_controller_still_limits_the_rest(fs: FakeCgroupFS) -> None:
    cgroups = unified(fs, available="cpu pids")
    assert cgroups.missing == {"memory"}
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    assert cgroup.limits() == CgroupLimits(None, 258, 512)
    assert cgroup.memory_usage() is None
    assert cgroup.oom_kills() == 0


def test_v2_limit_on_a_controller_not_enabled_names_the_file_and_cleans_up(
    fs: FakeCgroupFS,
) -> None:
    cgroups = unified(fs)
    # prepare() forgotten: the parent exists, but shares no controller with its children.
    fs.mkdir(Path("/sys/fs/cgroup/waka"))
    fs.mkdir(Path("/sys/fs/cgroup/waka/agent1"))
    with pytest.raises(CgroupError, match=r"memory\.max.*controller is not enabled"):
        cgroups.create("web.1-0a1b2c3d", LIMITS)
    assert cgroups.children() == []


def test_v2_memory_reading(fs: FakeCgroupFS) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    sandbox = cgroup.tracking.path
    fs.set(sandbox, "memory.stat", f"anon {300 * MIB}\nfile {150 * MIB}\nshmem {50 * MIB}\n")
    fs.set(sandbox, "memory.swap.current", str(10 * MIB))
    fs.set(sandbox, "memory.current", str(455 * MIB))
    fs.set(sandbox, "memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    usage = cgroup.memory_usage()
    assert usage == MemoryUsage(
        anon=300 * MIB,
        swap=10 * MIB,
        shmem=50 * MIB,
        page_cache=100 * MIB,
        charged=455 * MIB,
        limit=1024 * MIB,
        oom_kills=2,
    )
    assert usage.resident == 360 * MIB


def test_v2_kill_writes_cgroup_kill(fs: FakeCgroupFS) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    cgroup.kill()
    assert fs.writes[-1] == (cgroup.tracking.path / "cgroup.kill", "1")


# --------------------------------------------------------------------------------------------
# cgroup v1 (hybrid)


def test_hybrid_sandbox_gets_a_directory_per_controller_and_one_to_track(
    fs: FakeCgroupFS,
) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    assert [(str(d.path), d.version, set(d.controllers)) for d in cgroup.dirs] == [
        ("/sys/fs/cgroup/unified/waka/agent1/web.1-0a1b2c3d", 2, set()),
        ("/sys/fs/cgroup/memory/waka/agent1/web.1-0a1b2c3d", 1, {"memory"}),
        ("/sys/fs/cgroup/pids/waka/agent1/web.1-0a1b2c3d", 1, {"pids"}),
        ("/sys/fs/cgroup/cpu/waka/agent1/web.1-0a1b2c3d", 1, {"cpu"}),
    ]
    memory = files(fs, "/sys/fs/cgroup/memory/waka/agent1/web.1-0a1b2c3d")
    assert memory["memory.limit_in_bytes"] == str(1024 * MIB)
    assert memory["memory.memsw.limit_in_bytes"] == str(1024 * MIB)  # no swap on top
    assert memory["memory.swappiness"] == "0"
    assert files(fs, "/sys/fs/cgroup/pids/waka/agent1/web.1-0a1b2c3d")["pids.max"] == "258"
    assert files(fs, "/sys/fs/cgroup/cpu/waka/agent1/web.1-0a1b2c3d")["cpu.shares"] == "512"
    assert cgroup.limits() == LIMITS
    # No controller is enabled in cgroup2 for tracking alone.
    assert files(fs, "/sys/fs/cgroup/unified")["cgroup.subtree_control"] == ""


def test_v1_unlimited_reads_back_as_none(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", CgroupLimits())
    assert cgroup.limits() == CgroupLimits(None, None, 1024)


def test_v1_memory_reading_separates_tmpfs_from_page_cache(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    memory = "/sys/fs/cgroup/memory/waka/agent1/web.1-0a1b2c3d"
    # As measured on this host: a tmpfs file shows in cache *and* shmem, heap in rss.
    fs.set(
        memory,
        "memory.stat",
        f"cache {150 * MIB}\nrss {7 * MIB}\nshmem {100 * MIB}\nswap 0\n"
        f"total_cache {150 * MIB}\ntotal_rss {107 * MIB}\ntotal_shmem {100 * MIB}\n"
        f"total_swap {MIB}\n",
    )
    fs.set(memory, "memory.usage_in_bytes", str(258 * MIB))
    fs.set(memory, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    usage = cgroup.memory_usage()
    assert usage == MemoryUsage(
        anon=107 * MIB,
        swap=MIB,
        shmem=100 * MIB,
        page_cache=50 * MIB,
        charged=258 * MIB,
        limit=1024 * MIB,
        oom_kills=1,
    )
    assert usage.resident == 208 * MIB


# --------------------------------------------------------------------------------------------
# names, records, removal, stale cgroups


@pytest.mark.parametrize("setup", [unified, hybrid])
def test_cgroup_is_found_again_from_its_record(setup, fs: FakeCgroupFS) -> None:
    cgroups = setup(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    again = cgroups.from_record(cgroup.to_record())
    assert again.name == cgroup.name
    assert again.dirs == cgroup.dirs
    assert again.limits() == LIMITS


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"name": "x", "dirs": []}, "not a cgroup record"),
        ({"name": "x", "dirs": [{"path": "relative", "version": 2, "controllers": []}]}, "not a"),
        ({"name": "x", "dirs": [{"path": "/etc", "version": 2, "controllers": []}]}, "not in a"),
        ({"name": "x", "dirs": [{"path": "/sys/fs/cgroup/x", "version": 3}]}, "not a cgroup dir"),
    ],
)
def test_a_record_that_points_outside_the_cgroup_hierarchies_is_refused(
    fs: FakeCgroupFS, record: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        unified(fs).from_record(record)


@pytest.mark.parametrize("name", ["", "../web.1", "web 1", ".hidden", "a" * 129])
def test_cgroup_names_are_plain(fs: FakeCgroupFS, name: str) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    with pytest.raises(ValueError, match="cgroup name"):
        cgroups.create(name, LIMITS)


def test_create_never_reuses_or_removes_an_existing_cgroup(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    first = cgroups.create("web.1-0a1b2c3d", LIMITS)
    with pytest.raises(CgroupError, match="exists already"):
        cgroups.create("web.1-0a1b2c3d", LIMITS)
    assert all(fs.exists(d.path) for d in first.dirs)


def test_remove_refuses_while_processes_remain_and_is_idempotent(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    cgroup = cgroups.create("web.1-0a1b2c3d", LIMITS)
    fs.set(cgroup.dirs[0].path, "cgroup.procs", "4242\n")
    with pytest.raises(CgroupError, match="processes still run in it"):
        cgroup.remove(patience=0)
    fs.set(cgroup.dirs[0].path, "cgroup.procs", "")
    cgroup.remove()
    assert not cgroup.exists()
    cgroup.remove()


def test_stale_cgroups_are_found_in_any_hierarchy_and_removed(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    cgroups.create("web.1-0a1b2c3d", LIMITS)
    cgroups.create("web.1-99999999", LIMITS)
    # A crash half-way through create(): a directory in one hierarchy only.
    fs.mkdir(Path("/sys/fs/cgroup/memory/waka/agent1/worker.1-12345678"))

    assert [c.name for c in cgroups.children()] == [
        "web.1-0a1b2c3d",
        "web.1-99999999",
        "worker.1-12345678",
    ]
    assert cgroups.remove_stale({"web.1-0a1b2c3d"}) == ["web.1-99999999", "worker.1-12345678"]
    assert [c.name for c in cgroups.children()] == ["web.1-0a1b2c3d"]


def test_remove_parent_keeps_levels_still_in_use(fs: FakeCgroupFS) -> None:
    cgroups = hybrid(fs)
    cgroups.prepare()
    other = Cgroups(cgroups.layout, "waka/agent2", fs=fs)
    other.prepare()
    cgroups.remove_parent()
    assert not fs.exists(Path("/sys/fs/cgroup/memory/waka/agent1"))
    assert fs.exists(Path("/sys/fs/cgroup/memory/waka/agent2"))
    other.remove_parent()
    assert not fs.exists(Path("/sys/fs/cgroup/memory/waka"))
    assert fs.exists(Path("/sys/fs/cgroup/memory"))


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (256, 25), (512, 50), (1024, 100), (2048, 200), (8192, 800), (262144, 10000)],
)
def test_cpu_shares_map_to_weights_keeping_their_ratios(shares: int, weight: int) -> None:
    assert cpu_weight_from_shares(shares) == weight


@pytest.mark.parametrize("field", ["memory_max_bytes", "pids_max", "cpu_shares"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CgroupLimits(**{field: 0})


def test_cgroup_dir_record_round_trip() -> None:
    directory = CgroupDir(Path("/sys/fs/cgroup/memory/waka/a/web.1-1"), 1, frozenset({"memory"}))
    assert CgroupDir.from_record(directory.to_record()) == directory
    assert SandboxCgroup.from_record({"name": "web.1-1", "dirs": [directory.to_record()]}).dirs == (
        directory,
    )


@pytest.mark.parametrize(
    ("setup", "weight_file", "agent_level"),
    [
        (hybrid, "/sys/fs/cgroup/cpu/waka/agent1/cpu.shares", ["1024", "3584", "3072", "1024"]),
        (unified, "/sys/fs/cgroup/waka/agent1/cpu.weight", ["100", "350", "300", "100"]),
    ],
)
def test_levels_above_the_sandboxes_weigh_what_they_hold(
    setup, fs: FakeCgroupFS, weight_file: str, agent_level: list[str]
) -> None:
    """Each dyno competes for CPU as one process of its own weight, not the whole fleet as one."""
    cgroups = setup(fs)
    cgroups.prepare()
    level = Path(weight_file)
    top = level.parent.parent / level.name  # the `waka` level, shared by the host's agents
    seen = [fs.read(level)]
    sandboxes = [
        cgroups.create(f"web.{n}-0a1b2c3d", CgroupLimits(cpu_shares=shares))
        for n, shares in enumerate((512, 1024, 2048))
    ]
    seen.append(fs.read(level))
    assert fs.read(top) == fs.read(level)
    sandboxes[0].remove()
    seen.append(fs.read(level))
    for sandbox in sandboxes[1:]:
        sandbox.remove()
    seen.append(fs.read(level))
    assert seen == agent_level


def test_level_weight_stays_within_the_kernel_range(fs: FakeCgroupFS) -> None:
    cgroups = unified(fs)
    cgroups.prepare()
    for n in range(3):
        cgroups.create(f"web.{n}-0a1b2c3d", CgroupLimits(cpu_shares=262144))
    assert fs.read(Path("/sys/fs/cgroup/waka/agent1/cpu.weight")) == "10000"
