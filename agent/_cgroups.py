"""Per-sandbox cgroups: find how cgroups are mounted, give each sandbox its own cgroup with memory,
pids and CPU limits, read its memory, signal or kill everything in it, and remove it.

Hosts come in three setups, told apart by the file systems in /proc/self/mountinfo:

- v2 (unified): one cgroup2 hierarchy holds every controller. A sandbox gets one directory; its
  parent must list the controllers in cgroup.subtree_control, and (the "no internal processes"
  rule) no cgroup between the root and the sandbox may itself hold processes.
- hybrid: v1 hierarchies hold the controllers (one mount each: memory, pids, cpu...), and a cgroup2
  hierarchy with no controllers is mounted beside them (/sys/fs/cgroup/unified). A sandbox gets a
  directory in each v1 hierarchy it needs, plus one in cgroup2 only to track its processes:
  cgroup2 has cgroup.kill (kill every member at once, racing no fork) and a reliable member list.
- v1 (legacy): only v1 hierarchies; the sandbox's processes are tracked in its memory (or pids,
  or cpu) directory and killed by listing them.

Every sandbox cgroup lives under one parent per agent (e.g. `waka/<agent>/web.1-3f9a2c1d`), so an
agent can find the ones a crash left behind. Nothing here holds state that a restarted agent would
need: a sandbox's cgroup is found again from its record (paths and names).

All reads and writes of cgroup files go through `CgroupFS`, so the rules of each setup are tested
against a fake file system; signalling and killing use the real process table.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Protocol

CONTROLLERS: Final = frozenset({"memory", "pids", "cpu"})
_PREFERENCE: Final = ("memory", "pids", "cpu")
MOUNTINFO: Final = Path("/proc/self/mountinfo")

# cpu.shares (v1) is relative to 1024, the default; cpu.weight (v2) to 100. Scaling keeps the
# ratio between sandboxes (512:1024:2048 -> 50:100:200) and with every other cgroup on the host.
_DEFAULT_SHARES: Final = 1024
_DEFAULT_WEIGHT: Final = 100
_SHARES_RANGE: Final = (2, 262144)
_WEIGHT_RANGE: Final = (1, 10000)

_KILL_ROUNDS: Final = 200  # listings in a v1 kill; each round kills whatever was forked meanwhile
_REMOVE_RETRY: Final = 0.5  # seconds rmdir retries EBUSY: a member may still be leaving
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# v1 mount options that are flags, not controllers.
_V1_FLAGS: Final = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"}
)


class CgroupError(Exception):
    """A cgroup could not be found, created, limited, read or removed; the message says why."""


class CgroupUnavailable(CgroupError):
    """This host offers no cgroup hierarchy waka can use; the message says what is missing."""


# --------------------------------------------------------------------------------------------
# The file system seam


class CgroupFS(Protocol):
    """The cgroup files, as the kernel shows them. Raises OSError like the real calls."""

    def read(self, path: Path) -> str: ...

    def write(self, path: Path, value: str) -> None: ...

    def exists(self, path: Path) -> bool: ...

    def mkdir(self, path: Path) -> None:
        """Create the directory; nothing to do if it exists."""
        ...

    def rmdir(self, path: Path) -> None:
        """Remove the (control-file-only) directory; nothing to do if it is gone."""
        ...

    def subdirs(self, path: Path) -> list[str]:
        """Names of the child cgroups; empty if path does not exist."""
        ...


class KernelCgroupFS:
    """The real cgroup file systems."""

    def read(self, path: Path) -> str:
        with open(path) as file:
            return file.read()

    def write(self, path: Path, value: str) -> None:
        # No O_CREAT: a control file the kernel does not offer is an error, never a new file.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())  # one write: the kernel parses each write on its own
        finally:
            os.close(fd)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def mkdir(self, path: Path) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)

    def rmdir(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)

    def subdirs(self, path: Path) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
        except FileNotFoundError:
            return []


# --------------------------------------------------------------------------------------------
# Finding the hierarchies (pure)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount_point: Path
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: from the mount options; v2: the root's cgroup.controllers


def parse_mountinfo(text: str) -> list[Hierarchy]:
    """The cgroup hierarchies in /proc/self/mountinfo text, first mount of each kept.

    v2 hierarchies come back with no controllers: they are listed in the hierarchy's own
    cgroup.controllers file, not in the mount options (see `CgroupLayout.detect`).
    """
    found: list[Hierarchy] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        if not separator:
            continue
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fs_type, options = tail[0], tail[2].split(",")
        if fs_type == "cgroup2":
            version, controllers = 2, frozenset[str]()
        elif fs_type == "cgroup":
            version = 1
            controllers = frozenset(o for o in options if "=" not in o and o not in _V1_FLAGS)
            if not controllers:
                continue  # a named hierarchy without controllers (name=systemd): not ours
        else:
            continue
        key = (version, controllers)
        if key in seen:
            continue  # the same hierarchy mounted again (bind mounts in containers)
        seen.add(key)
        found.append(Hierarchy(Path(_unescape(fields[4])), version, controllers))
    return found


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040...)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), path)


def _with_listed_controllers(hierarchy: Hierarchy, fs: CgroupFS) -> Hierarchy:
    """A cgroup2 hierarchy with the controllers its root offers (those no v1 hierarchy holds)."""
    listing = hierarchy.mount_point / "cgroup.controllers"
    try:
        listed = fs.read(listing).split()
    except OSError as error:
        raise CgroupError(f"cannot read {listing}: {error.strerror or error}") from error
    return Hierarchy(hierarchy.mount_point, 2, frozenset(listed))


@dataclass(frozen=True)
class Placement:
    """Where a sandbox's cgroup goes in one hierarchy, and which controllers it sets there."""

    hierarchy: Hierarchy
    controllers: frozenset[str]  # may be empty: a cgroup2 directory kept only for tracking


@dataclass(frozen=True)
class CgroupLayout:
    unified: Hierarchy | None
    legacy: tuple[Hierarchy, ...]

    @classmethod
    def from_hierarchies(cls, hierarchies: Iterable[Hierarchy]) -> CgroupLayout:
        hierarchies = list(hierarchies)
        unified = next((h for h in hierarchies if h.version == 2), None)
        return cls(unified, tuple(h for h in hierarchies if h.version == 1))

    @classmethod
    def detect(cls, fs: CgroupFS | None = None, mountinfo: str | None = None) -> CgroupLayout:
        fs = fs or KernelCgroupFS()
        text = mountinfo if mountinfo is not None else MOUNTINFO.read_text()
        hierarchies = [
            _with_listed_controllers(h, fs) if h.version == 2 else h for h in parse_mountinfo(text)
        ]
        return cls.from_hierarchies(hierarchies)

    @property
    def mode(self) -> str:
        """ "v2", "hybrid", "v1" or "none", as the module docstring describes them."""
        if self.unified is not None:
            return "hybrid" if self.legacy else "v2"
        return "v1" if self.legacy else "none"

    def placements(self, wanted: Collection[str] = CONTROLLERS) -> tuple[Placement, ...]:
        """Each wanted controller in the hierarchy that has it (cgroup2 first), plus cgroup2 for
        tracking even where it has none of them. The tracking hierarchy comes first."""
        by_hierarchy: dict[Hierarchy, set[str]] = {}
        if self.unified is not None:
            by_hierarchy[self.unified] = set()
        # memory before pids before cpu: on v1 the first hierarchy placed tracks the processes.
        order = [c for c in _PREFERENCE if c in wanted] + sorted(set(wanted) - set(_PREFERENCE))
        for controller in order:
            if self.unified is not None and controller in self.unified.controllers:
                by_hierarchy[self.unified].add(controller)
                continue
            for hierarchy in self.legacy:
                if controller in hierarchy.controllers:
                    by_hierarchy.setdefault(hierarchy, set()).add(controller)
                    break
        return tuple(Placement(h, frozenset(c)) for h, c in by_hierarchy.items())

    def missing(self, wanted: Collection[str] = CONTROLLERS) -> frozenset[str]:
        placed = {c for placement in self.placements(wanted) for c in placement.controllers}
        return frozenset(wanted) - placed


# --------------------------------------------------------------------------------------------
# Limits and readings


@dataclass(frozen=True)
class CgroupLimits:
    memory_max_bytes: int | None = None  # the hard limit: the kernel OOM-kills above it
    pids_max: int | None = None  # processes + threads
    cpu_shares: int | None = None  # relative CPU weight; 1024 is one standard share

    def __post_init__(self) -> None:
        for name in ("memory_max_bytes", "pids_max", "cpu_shares"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


def cpu_weight_from_shares(shares: int) -> int:
    """cgroup v2 cpu.weight for a v1 cpu.shares value, keeping the ratios (1024 -> 100)."""
    weight = round(shares * _DEFAULT_WEIGHT / _DEFAULT_SHARES)
    return max(_WEIGHT_RANGE[0], min(_WEIGHT_RANGE[1], weight))


@dataclass(frozen=True)
class MemoryUsage:
    """One reading of a sandbox's memory, in bytes, from the cgroup (psutil is not cgroup-aware).

    Where each kind of memory shows (measured on cgroup v1, kernel 6.x; v2 names the same
    things `anon`, `shmem`, `file`):
    - a process's heap and stacks: `anon` (v1 `rss`);
    - files written to the sandbox's /tmp or /dev/shm (tmpfs): `shmem`, never `anon`; without
      swap the kernel cannot reclaim them, and they count against the hard limit;
    - files read or written on disk (/app's overlay, binds): `page_cache`; reclaimed under pressure,
      so they never cause an OOM kill, though they show in `charged`.
    """

    anon: int
    swap: int
    shmem: int
    page_cache: int  # file-backed cache, tmpfs excluded
    charged: int  # what the kernel charges against the hard limit (all of the above and more)
    limit: int | None  # the hard limit; None when unlimited
    oom_kills: int  # processes the kernel OOM-killed in this cgroup so far

    @property
    def resident(self) -> int:
        """What R14/R15 count: Heroku's RSS + swap (page cache excluded), plus tmpfs.

        tmpfs is added because in waka a dyno's /tmp lives in RAM: it is charged against the hard
        limit and cannot be reclaimed, so leaving it out would let a dyno be OOM-killed at twice
        its quota without an R14 warning first.
        """
        return self.anon + self.swap + self.shmem


@dataclass(frozen=True)
class CgroupDir:
    """A sandbox's directory in one hierarchy."""

    path: Path
    version: int
    controllers: frozenset[str]

    def to_record(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": self.version,
            "controllers": sorted(self.controllers),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> CgroupDir:
        path, version, controllers = (record.get(k) for k in ("path", "version", "controllers"))
        if not (
            isinstance(path, str)
            and os.path.isabs(path)
            and version in (1, 2)
            and isinstance(controllers, list)
            and all(isinstance(c, str) for c in controllers)
        ):
            raise ValueError(f"not a cgroup directory record: {dict(record)!r}")
        assert isinstance(version, int)
        return cls(Path(path), version, frozenset(controllers))


# --------------------------------------------------------------------------------------------
# One sandbox's cgroup


class SandboxCgroup:
    """The cgroup of one sandbox: a directory in each hierarchy used, the first one tracking."""

    def __init__(
        self,
        name: str,
        dirs: Iterable[CgroupDir],
        fs: CgroupFS | None = None,
        *,
        on_removed: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.dirs = tuple(dirs)
        if not self.dirs:
            raise ValueError(f"cgroup {name} has no directory")
        self._fs = fs or KernelCgroupFS()
        self._on_removed = on_removed

    def __repr__(self) -> str:
        return f"SandboxCgroup({self.name!r}, {[str(d.path) for d in self.dirs]})"

    # ------------------------------------------------------------ identity

    def to_record(self) -> dict[str, object]:
        return {"name": self.name, "dirs": [d.to_record() for d in self.dirs]}

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, object],
        fs: CgroupFS | None = None,
        *,
        on_removed: Callable[[], None] | None = None,
    ) -> SandboxCgroup:
        name, dirs = record.get("name"), record.get("dirs")
        if not isinstance(name, str) or not isinstance(dirs, list) or not dirs:
            raise ValueError(f"not a cgroup record: {dict(record)!r}")
        return cls(name, [CgroupDir.from_record(d) for d in dirs], fs, on_removed=on_removed)

    @property
    def procs_files(self) -> list[Path]:
        """The cgroup.procs file of every directory: a process joins by writing its pid to each."""
        return [d.path / "cgroup.procs" for d in self.dirs]

    @property
    def tracking(self) -> CgroupDir:
        return self.dirs[0]

    def dir_for(self, controller: str) -> CgroupDir | None:
        return next((d for d in self.dirs if controller in d.controllers), None)

    # ------------------------------------------------------------ limits

    def apply(self, limits: CgroupLimits) -> None:
        """Write the limits into the directories that hold each controller."""
        memory, pids, cpu = (self.dir_for(c) for c in ("memory", "pids", "cpu"))
        if limits.memory_max_bytes is not None and memory is not None:
            self._apply_memory(memory, limits.memory_max_bytes)
        if limits.pids_max is not None and pids is not None:
            self._write(pids.path / "pids.max", str(limits.pids_max))
        if limits.cpu_shares is not None and cpu is not None:
            if cpu.version == 1:
                shares = max(_SHARES_RANGE[0], min(_SHARES_RANGE[1], limits.cpu_shares))
                self._write(cpu.path / "cpu.shares", str(shares))
            else:
                self._write(cpu.path / "cpu.weight", str(cpu_weight_from_shares(limits.cpu_shares)))

    def _apply_memory(self, memory: CgroupDir, hard_limit: int) -> None:
        if memory.version == 1:
            self._write(memory.path / "memory.limit_in_bytes", str(hard_limit))
            # No swap: memory+swap capped at the same figure (present with swap accounting
            # only). The memory limit first: the kernel keeps memsw >= memory at every step.
            memsw = memory.path / "memory.memsw.limit_in_bytes"
            if self._fs.exists(memsw):
                self._write(memsw, str(hard_limit))
            swappiness = memory.path / "memory.swappiness"
            if self._fs.exists(swappiness):
                self._write(swappiness, "0")
        else:
            self._write(memory.path / "memory.max", str(hard_limit))
            swap_max = memory.path / "memory.swap.max"
            if self._fs.exists(swap_max):
                self._write(swap_max, "0")

    def limits(self) -> CgroupLimits:
        """The limits as the kernel holds them now (None: unlimited or no such controller)."""
        memory, pids, cpu = (self.dir_for(c) for c in ("memory", "pids", "cpu"))
        memory_max = pids_max = shares = None
        if memory is not None:
            name = "memory.limit_in_bytes" if memory.version == 1 else "memory.max"
            memory_max = _limit_value(self._read(memory.path / name))
            if memory_max is not None and memory_max >= 2**62:
                memory_max = None  # v1 says "unlimited" with a huge page-aligned number
        if pids is not None:
            pids_max = _limit_value(self._read(pids.path / "pids.max"))
        if cpu is not None:
            if cpu.version == 1:
                shares = int(self._read(cpu.path / "cpu.shares"))
            else:
                weight = int(self._read(cpu.path / "cpu.weight"))
                shares = round(weight * _DEFAULT_SHARES / _DEFAULT_WEIGHT)
        return CgroupLimits(memory_max, pids_max, shares)

    # ------------------------------------------------------------ readings

    def memory_usage(self) -> MemoryUsage | None:
        """The memory reading, or None without a memory controller."""
        memory = self.dir_for("memory")
        if memory is None:
            return None
        stat = _key_values(self._read(memory.path / "memory.stat"))
        if memory.version == 1:
            # total_*: this cgroup and its descendants (a sandbox has none, but say so anyway).
            shmem = stat.get("total_shmem", 0)
            return MemoryUsage(
                anon=stat.get("total_rss", 0),
                swap=stat.get("total_swap", 0),
                shmem=shmem,
                page_cache=max(0, stat.get("total_cache", 0) - shmem),
                charged=int(self._read(memory.path / "memory.usage_in_bytes")),
                limit=self.limits().memory_max_bytes,
                oom_kills=self.oom_kills(),
            )
        swap_file = memory.path / "memory.swap.current"
        swap = int(self._read(swap_file)) if self._fs.exists(swap_file) else 0
        shmem = stat.get("shmem", 0)
        return MemoryUsage(
            anon=stat.get("anon", 0),
            swap=swap,
            shmem=shmem,
            page_cache=max(0, stat.get("file", 0) - shmem),
            charged=int(self._read(memory.path / "memory.current")),
            limit=_limit_value(self._read(memory.path / "memory.max")),
            oom_kills=self.oom_kills(),
        )

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup (0 without a
        memory controller)."""
        memory = self.dir_for("memory")
        if memory is None:
            return 0
        name = "memory.oom_control" if memory.version == 1 else "memory.events"
        return _key_values(self._read(memory.path / name)).get("oom_kill", 0)

    def pids_limit_hits(self) -> int:
        """How many forks the pids limit has refused (0 without a pids controller)."""
        pids = self.dir_for("pids")
        if pids is None:
            return 0
        return _key_values(self._read(pids.path / "pids.events")).get("max", 0)

    def pids_current(self) -> int | None:
        pids = self.dir_for("pids")
        return None if pids is None else int(self._read(pids.path / "pids.current"))

    # ------------------------------------------------------------ processes

    def pids(self) -> list[int]:
        """The members (zombies excluded: they have left the cgroup); empty once it is gone."""
        try:
            text = self._fs.read(self.tracking.path / "cgroup.procs")
        except FileNotFoundError:
            return []
        except OSError as error:
            raise CgroupError(
                f"cannot list the processes of {self.tracking.path}: {error}"
            ) from error
        return [int(pid) for pid in text.split()]

    def is_populated(self) -> bool:
        return bool(self.pids())

    def signal(self, sig: int, *, exclude: Collection[int] = ()) -> int:
        """Send sig to every member not in exclude; returns how many got it."""
        return sum(self._signal_member(pid, sig) for pid in self.pids() if pid not in exclude)

    def kill(self) -> None:
        """SIGKILL every member: at once through cgroup.kill where the kernel offers it (cgroup2,
        Linux 5.14+), else by listing the members until no new one appears."""
        kill_file = self.tracking.path / "cgroup.kill"
        if self.tracking.version == 2 and self._fs.exists(kill_file):
            try:
                self._fs.write(kill_file, "1")
                return
            except FileNotFoundError:
                return  # already removed: nothing left to kill
            except OSError as error:
                raise CgroupError(
                    f"cannot kill the processes of {self.tracking.path}: {error}"
                ) from error
        killed: set[int] = set()
        for _ in range(_KILL_ROUNDS):
            fresh = [pid for pid in self.pids() if pid not in killed]
            if not fresh:
                return
            for pid in fresh:
                self._signal_member(pid, signal.SIGKILL)
                killed.add(pid)
        raise CgroupError(f"processes in {self.tracking.path} keep appearing faster than killed")

    def _signal_member(self, pid: int, sig: int) -> bool:
        """Signal pid only if it is still the member that was listed: the pidfd pins the
        process, and the membership check after opening it rules out a recycled pid."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            if not self._holds(pid):
                return False
            signal.pidfd_send_signal(fd, sig)
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)

    def _holds(self, pid: int) -> bool:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            return False
        tracking = self.tracking
        suffix = "/" + tracking.path.name
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if tracking.version == 2:
                matches = controllers == ""
            else:
                matches = bool(set(controllers.split(",")) & tracking.controllers)
            if matches and path.endswith(suffix):
                return True
        return False

    # ------------------------------------------------------------ removal

    def remove(self, *, patience: float = _REMOVE_RETRY) -> None:
        """Remove every directory; already removed ones are fine. Raises CgroupError while
        processes remain (after retrying for `patience` seconds)."""
        deadline = time.monotonic() + patience
        for directory in reversed(self.dirs):  # the tracking directory last
            while True:
                try:
                    self._fs.rmdir(directory.path)
                    break
                except OSError as error:
                    if error.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.005)  # a member that just exited may still be leaving
                        continue
                    reason = (
                        "processes still run in it" if error.errno == errno.EBUSY else str(error)
                    )
                    raise CgroupError(
                        f"cannot remove the cgroup {directory.path}: {reason}"
                    ) from error
        if self._on_removed is not None:
            self._on_removed()

    def exists(self) -> bool:
        return any(self._fs.exists(d.path) for d in self.dirs)

    # ------------------------------------------------------------ helpers

    def _read(self, path: Path) -> str:
        try:
            return self._fs.read(path)
        except OSError as error:
            raise CgroupError(f"cannot read {path}: {error.strerror or error}") from error

    def _write(self, path: Path, value: str) -> None:
        try:
            self._fs.write(path, value)
        except OSError as error:
            hint = ""
            if error.errno == errno.ENOENT:
                hint = " (the controller is not enabled for this cgroup)"
            raise CgroupError(
                f"cannot write {value} to {path}: {error.strerror or error}{hint}"
            ) from error


def _key_values(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def _limit_value(text: str) -> int | None:
    text = text.strip()
    return None if text == "max" else int(text)


# --------------------------------------------------------------------------------------------
# One agent's cgroups


class Cgroups:
    """Every sandbox cgroup of one agent, under `parent` in each hierarchy used.

    `parent` is a path from each hierarchy's root, e.g. "waka/3f9a2c1d4e5b". Sandbox cgroups are
    its direct children.
    """

    def __init__(
        self,
        layout: CgroupLayout,
        parent: str,
        *,
        fs: CgroupFS | None = None,
        wanted: Collection[str] = CONTROLLERS,
    ) -> None:
        relative = PurePosixPath(parent.strip("/"))
        if (
            not parent.strip("/")
            or ".." in relative.parts
            or os.path.normpath(str(relative)) != str(relative)
        ):
            raise ValueError(f"cgroup parent {parent!r} must be a plain path such as 'waka/agent'")
        self.layout = layout
        self.parent = str(relative)
        self._fs = fs or KernelCgroupFS()
        self._cpu_lock = threading.Lock()  # sandboxes start and stop in worker threads
        self._placements = layout.placements(wanted)
        self.missing = layout.missing(wanted)
        if not self._placements:
            raise CgroupUnavailable(
                "no cgroup hierarchy is mounted (nothing of type cgroup or cgroup2 in"
                " /proc/self/mountinfo)"
            )

    @classmethod
    def detect(cls, parent: str, *, wanted: Collection[str] = CONTROLLERS) -> Cgroups:
        return cls(CgroupLayout.detect(), parent, wanted=wanted)

    def parent_dirs(self) -> list[Path]:
        return [p.hierarchy.mount_point / self.parent for p in self._placements]

    # ------------------------------------------------------------ agent start and stop

    def prepare(self) -> None:
        """Create the parent in each hierarchy; on cgroup2 enable the controllers for every
        cgroup from the root down to the sandboxes."""
        for placement in self._placements:
            mount = placement.hierarchy.mount_point
            levels = [mount / part for part in _prefixes(self.parent)]
            for level in levels:
                self._mkdir(level)
            if placement.hierarchy.version == 2 and placement.controllers:
                enable = " ".join(f"+{c}" for c in sorted(placement.controllers))
                for level in [mount, *levels]:
                    self._enable(level, enable, is_root=level == mount)
        self.rebalance_cpu()

    def rebalance_cpu(self) -> None:
        """Give each level above the sandboxes the CPU weight of what it holds.

        The kernel shares CPU between siblings: a group at the top competes as ONE entity with
        each process outside it. With the default weight, all dynos together would weigh as
        much as a single host process, and any busy process on the host would slow the whole
        fleet (measured: 50 dynos up in 6-9 s instead of 1.5 s while the host was busy). Summing
        the children's weights makes every dyno count as one process of its own weight, as if
        the levels above it were not there.
        """
        for placement in self._placements:
            if "cpu" not in placement.controllers:
                continue
            mount, version = placement.hierarchy.mount_point, placement.hierarchy.version
            name = "cpu.shares" if version == 1 else "cpu.weight"
            default, (low, high) = (
                (_DEFAULT_SHARES, _SHARES_RANGE)
                if version == 1
                else (_DEFAULT_WEIGHT, _WEIGHT_RANGE)
            )
            with self._cpu_lock:
                for level in reversed([mount / p for p in _prefixes(self.parent)]):
                    total = 0
                    for child in self._fs.subdirs(level):
                        with contextlib.suppress(OSError, ValueError):  # a child just removed
                            total += int(self._fs.read(level / child / name))
                    weight = max(low, min(high, total)) if total else default
                    try:
                        self._fs.write(level / name, str(weight))
                    except OSError as error:
                        raise CgroupError(
                            f"cannot write {weight} to {level / name}: {error.strerror}"
                        ) from error

    def _enable(self, level: Path, enable: str, *, is_root: bool) -> None:
        try:
            self._fs.write(level / "cgroup.subtree_control", enable)
        except OSError as error:
            hint = ""
            if error.errno == errno.EBUSY and not is_root:
                hint = (
                    f" ({level} holds processes itself, and cgroup v2 lets only a cgroup"
                    " without processes share controllers with its children: choose a parent"
                    " outside the agent's own cgroup)"
                )
            raise CgroupError(
                f"cannot enable {enable} in {level}/cgroup.subtree_control: {error.strerror}{hint}"
            ) from error

    def remove_parent(self) -> None:
        """At agent shutdown: remove the parent dirs that are empty, deepest first (a shared
        level still used by another agent stays)."""
        for placement in self._placements:
            mount = placement.hierarchy.mount_point
            for level in reversed([mount / p for p in _prefixes(self.parent)]):
                try:
                    self._fs.rmdir(level)
                except OSError as error:
                    if error.errno in (errno.EBUSY, errno.ENOTEMPTY):
                        break
                    raise CgroupError(f"cannot remove the cgroup {level}: {error}") from error

    # ------------------------------------------------------------ sandboxes

    def create(self, name: str, limits: CgroupLimits) -> SandboxCgroup:
        """A new, empty cgroup for one sandbox, limits applied; removed again if that fails."""
        if not _NAME.match(name):
            raise ValueError(f"cgroup name {name!r} must be letters, digits, '.', '_', '-'")
        dirs = self._dirs_for(name)
        taken = [d.path for d in dirs if self._fs.exists(d.path)]
        if taken:
            raise CgroupError(f"the cgroup {taken[0]} exists already")
        created = []
        try:
            for directory in dirs:
                self._mkdir(directory.path)
                created.append(directory)
            cgroup = SandboxCgroup(name, dirs, self._fs, on_removed=self.rebalance_cpu)
            cgroup.apply(limits)
            self.rebalance_cpu()
        except BaseException:
            if created:
                with contextlib.suppress(CgroupError):
                    SandboxCgroup(name, created, self._fs).remove(patience=0)
            raise
        return cgroup

    def _dirs_for(self, name: str) -> list[CgroupDir]:
        return [
            CgroupDir(
                p.hierarchy.mount_point / self.parent / name, p.hierarchy.version, p.controllers
            )
            for p in self._placements
        ]

    def from_record(self, record: Mapping[str, object]) -> SandboxCgroup:
        """The cgroup a sandbox record names; its paths must lie in this host's hierarchies."""
        cgroup = SandboxCgroup.from_record(record, self._fs, on_removed=self.rebalance_cpu)
        mounts = [p.hierarchy.mount_point for p in self._placements]
        for directory in cgroup.dirs:
            if not any(directory.path.is_relative_to(mount) for mount in mounts):
                raise ValueError(f"cgroup {directory.path} is not in a cgroup hierarchy here")
        return cgroup

    def children(self) -> list[SandboxCgroup]:
        """Every sandbox cgroup under the parent (in any hierarchy), e.g. to find stale ones."""
        names: set[str] = set()
        for parent in self.parent_dirs():
            names.update(self._fs.subdirs(parent))
        return [
            SandboxCgroup(name, self._dirs_for(name), self._fs, on_removed=self.rebalance_cpu)
            for name in sorted(names)
        ]

    def remove_stale(self, in_use: Collection[str], *, timeout: float = 5.0) -> list[str]:
        """Kill and remove every sandbox cgroup whose name is not in in_use (left by a crash
        between creating a cgroup and recording it); returns their names. Blocking."""
        removed = []
        for cgroup in self.children():
            if cgroup.name in in_use:
                continue
            cgroup.kill()
            deadline = time.monotonic() + timeout
            while cgroup.is_populated():
                if time.monotonic() > deadline:
                    raise CgroupError(f"processes of the stale cgroup {cgroup.name} do not die")
                time.sleep(0.01)
            cgroup.remove()
            removed.append(cgroup.name)
        return removed

    def _mkdir(self, path: Path) -> None:
        try:
            self._fs.mkdir(path)
        except OSError as error:
            raise CgroupError(f"cannot create the cgroup {path}: {error.strerror}") from error


def agent_cgroup_parent(data_dir: Path) -> str:
    """The cgroup parent of the agent with this data dir: `waka/<12 hex>`, stable across its
    restarts and distinct for every agent on the host (tests and benchmarks run several)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    return f"waka/{digest[:12]}"


def _prefixes(relative: str) -> list[str]:
    """'waka/a/b' -> ['waka', 'waka/a', 'waka/a/b']"""
    parts = PurePosixPath(relative).parts
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
