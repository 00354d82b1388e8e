"""Sandbox drivers: run one dyno's or build's command isolated from the host and from each other.

Two drivers share one interface (`Driver`, `SandboxProcess`):

- `BubblewrapDriver` (the agent is root): PID, IPC, UTS and mount namespaces (and a network
  namespace given in the spec, entered by nsenter in front of bwrap); the host's system
  dirs read-only; fresh /proc, minimal /dev, private /tmp and /dev/shm; /app as an overlay
  (dynos) or a writable bind (builds); the command runs unprivileged, with no capabilities and
  no_new_privs, dropped by util-linux `setpriv` inside the sandbox.
- `PlainDriver` (development only): the command as a plain process, no isolation at all.

Life of a sandbox, as the supervisor sees it:

    process = driver.start(spec, run_dir, stdin=..., stdout=out, stderr=out)
    record = process.record()         # persist: enough for driver.adopt() after an agent restart
    process.memory_usage()            # with limits: the cgroup's reading (R14/R15 monitor)
    process.signal_all(signal.SIGTERM)  # graceful stop: every process in the sandbox
    status = await process.wait()     # the command exited (>= 0 exit code, -N killed by signal N)
    process.kill()                    # whatever it left behind (or after the grace period)
    await process.wait_until_empty()  # every process of the sandbox is gone
    process.cleanup()                 # unmount /app's overlay, remove the cgroup and the run dir

With ResourceLimits, each sandbox gets its own cgroup (see _cgroups) that it joins before its first
instruction: bwrap is started through `sh -c 'echo $$ > .../cgroup.procs ...; exec bwrap ...'`
(posix_spawn has no cgroup hook, and preexec_fn is unsafe in the threaded agent), so bwrap and
everything it starts are inside. Signals and kills then go through the cgroup's member list.
The sh costs under a millisecond; the join itself waits for one RCU grace period (the kernel's
cgroup_threadgroup_rwsem, taken for writing by every move between cgroups; ~10-15 ms on this
2-core VM, HZ=250), latency rather than CPU, shared by starts that happen together.

Nothing here depends on the agent being the sandbox's parent: the outermost process is spawned in
its own session, waited on through a pidfd, and bubblewrap writes the exit code to a status file
in the run dir (`--json-status-fd`), so a restarted agent adopts running sandboxes from their
records and still learns how they ended.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import enum
import errno
import json
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Protocol

import psutil
import trio

from waka.agent._cgroups import (
    CgroupError,
    CgroupLimits,
    Cgroups,
    MemoryUsage,
    SandboxCgroup,
)
from waka.agent._memory import kill_threshold
from waka.agent._process import (
    PidHandle,
    ProcessIdentity,
    identify,
    live_descendants,
    pid_namespace_of,
    session_members,
    signal_processes,
    spawn,
    status_from_shell_code,
)

EXIT_STATUS_UNKNOWN: Final = -256
"""wait()'s answer when nobody could have seen the exit status: the agent was restarted (so it is
not the parent) and the process left no status record (plain driver; or bubblewrap itself was
killed). Outside both the exit-code (>= 0) and killed-by-signal (-1..-64) ranges."""

APP_PATH: Final = "/app"
BWRAP_INSTALL_HINT: Final = "bubblewrap is not installed: apt-get install bubblewrap"
SETPRIV_PATH: Final = "/usr/bin/setpriv"
NSENTER_PATH: Final = "/usr/bin/nsenter"  # util-linux, as setpriv: enters a network namespace

# The fd numbers bwrap sees: its NUL-separated arguments and the status file.
_ARGS_FD: Final = 3
_STATUS_FD: Final = 4
_STATUS_FILE: Final = "status.json"
_SETUP_GRACE: Final = 0.25  # seconds signal_all waits for a sandbox still being set up
SH_PATH: Final = "/bin/sh"
# bwrap's own processes in the sandbox's cgroup (bwrap itself, and the PID namespace's pid 1):
# added to the pids limit so that the command gets exactly the number it was given.
BWRAP_OWN_PROCESSES: Final = 2
# Run by SH_PATH before bwrap: join each cgroup ($1 says how many cgroup.procs files follow),
# then become bwrap. 125: the sandbox never started (bwrap's own failures exit 1).
_JOIN_CGROUPS_THEN_EXEC: Final = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do'
    ' echo $$ > "$1" || { echo "waka: cannot move the sandbox into the cgroup $1" >&2; exit 125; };'
    ' shift; n=$((n - 1)); done; exec "$@"'
)

# Host dirs that become the sandbox's read-only root ("stack host"). /bin, /lib... are symlinks
# into /usr on a merged-/usr host and are recreated as symlinks; otherwise bound read-only.
_SYSTEM_DIRS: Final = ("/usr", "/etc")
_ROOT_LINKS_OR_DIRS: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_RESERVED_TARGETS: Final = (*_SYSTEM_DIRS, *_ROOT_LINKS_OR_DIRS, "/proc", "/dev")

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME = re.compile(r"^[^=\0]+$")


class SandboxError(Exception):
    """A sandbox could not be set up, started or cleaned up; the message says why."""


class SandboxUnavailable(SandboxError):
    """No driver can run dynos here as configured; the message names what is missing."""


class SandboxSpecError(SandboxError, ValueError):
    """A SandboxSpec asks for something the sandbox cannot or must not do."""


# --------------------------------------------------------------------------------------------
# What to run


@dataclass(frozen=True)
class Bind:
    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class NetworkNamespace:
    """A network namespace for the sandbox (instead of the host's network), entered with
    nsenter in front of bwrap; bwrap's other options are unchanged."""

    path: Path  # a namespace file, e.g. /run/netns/NAME
    resolv_conf: Path | None = None  # shown as the host's /etc/resolv.conf, when set


class AppMount(enum.Enum):
    OVERLAY = "overlay"  # dynos: /app = read-only slug tree + a private writable layer
    BIND_RW = "bind-rw"  # builds: /app is the build directory itself, writable


@dataclass(frozen=True)
class ResourceLimits:
    """Per-sandbox limits, from the dyno size; enforced by the bubblewrap driver with a cgroup
    when it was given one (see pick_driver's cgroup_parent), ignored by the plain driver."""

    memory_bytes: int | None = None  # the memory QUOTA; the kernel's hard limit is R15's, 2x
    max_pids: int | None = None  # processes + threads of the command (bwrap's own not counted)
    cpu_shares: int | None = None  # relative CPU weight; 1024 is one standard share

    def for_cgroup(self) -> CgroupLimits:
        memory, pids = self.memory_bytes, self.max_pids
        return CgroupLimits(
            memory_max_bytes=None if memory is None else kill_threshold(memory),
            pids_max=None if pids is None else pids + BWRAP_OWN_PROCESSES,
            cpu_shares=self.cpu_shares,
        )


@dataclass(frozen=True)
class SandboxSpec:
    """What to run and how it sees the world.

    With `AppMount.OVERLAY`, overlayfs checks permissions against the lower (slug) files, so the
    slug tree must be owned by `uid` for the command to modify files it ships; chown-ing it when
    unpacking is the caller's job.
    """

    hostname: str  # e.g. "web.1" (UTS namespace)
    argv: Sequence[str]  # run inside, after privileges are dropped; argv[0] found via env PATH
    env: Mapping[str, str]  # the whole environment inside; bubblewrap only adds PWD (= cwd)
    uid: int  # unprivileged uid (and gid = uid) the command runs as
    app_dir: Path  # host directory shown at /app
    app_mount: AppMount
    binds: Sequence[Bind] = ()  # extra mounts (build: /cache rw, /env ro, /buildpacks ro, ...)
    cwd: str = APP_PATH
    limits: ResourceLimits | None = None  # None: no cgroup at all (e.g. builds)
    network: NetworkNamespace | None = None  # None: the host's network

    def __post_init__(self) -> None:
        if self.network is not None and not self.network.path.is_absolute():
            raise SandboxSpecError(f"network namespace {self.network.path} must be absolute")
        if not _HOSTNAME.match(self.hostname):
            raise SandboxSpecError(
                f"hostname {self.hostname!r} is not a valid host name (letters, digits, '.', '_',"
                " '-'; at most 64 characters)"
            )
        if not self.argv or any("\0" in arg for arg in self.argv):
            raise SandboxSpecError(f"argv must be non-empty with no NUL characters: {self.argv!r}")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name) or "\0" in value:
                raise SandboxSpecError(f"environment variable {name!r} has an invalid name/value")
        if not 0 < self.uid < 2**31 - 1:
            raise SandboxSpecError(f"uid {self.uid} must be an unprivileged uid (never root)")
        if not os.path.isabs(self.cwd):
            raise SandboxSpecError(f"cwd {self.cwd!r} must be an absolute path inside the sandbox")
        for bind in self.binds:
            _check_bind_target(bind.target)


def _check_bind_target(target: str) -> None:
    if not os.path.isabs(target) or os.path.normpath(target) != target or target == "/":
        raise SandboxSpecError(f"bind target {target!r} must be a normalized absolute path")
    if target == APP_PATH:
        raise SandboxSpecError("bind target /app is reserved for the app directory")
    for reserved in _RESERVED_TARGETS:
        if target == reserved or target.startswith(reserved + "/"):
            # bwrap would create the mount point through the read-only bind, i.e. on the host.
            raise SandboxSpecError(
                f"bind target {target!r} lies inside {reserved}, which the sandbox shares"
                " read-only with the host; choose a path outside it (e.g. under /opt)"
            )


# --------------------------------------------------------------------------------------------
# The interface


class SandboxProcess(abc.ABC):
    """A running sandbox. Its record() survives agent restarts (see Driver.adopt).

    A class rather than the dataclass first sketched: it owns OS handles (pidfds), for which
    generated equality and repr would be meaningless.
    """

    pid: int  # host pid of the outermost process (bwrap, or the command itself)
    start_time: float  # psutil create_time of pid (for people; identity uses start ticks)
    run_dir: Path  # driver-owned dir of this instance (overlay layers, status file)
    cgroup: SandboxCgroup | None  # the sandbox's cgroup when it runs with limits

    def __init__(
        self, identity: ProcessIdentity, run_dir: Path, cgroup: SandboxCgroup | None = None
    ) -> None:
        self.identity = identity
        self.pid = identity.pid
        self.start_time = identity.start_time
        self.run_dir = run_dir
        self.cgroup = cgroup
        self._exit_status: int | None = None
        self._wait_lock = trio.Lock()

    def memory_usage(self) -> MemoryUsage | None:
        """The sandbox's memory as its cgroup counts it; None without a cgroup (no limits, or
        the plain driver). Cheap (two small cgroup files), but a blocking read all the same."""
        if self.cgroup is None:
            return None
        try:
            return self.cgroup.memory_usage()
        except CgroupError as error:
            raise SandboxError(f"cannot read the memory of {self.run_dir}: {error}") from error

    async def wait(self) -> int:
        """The command's exit status: >= 0 exit code, -N killed by signal N, or
        EXIT_STATUS_UNKNOWN. Returns once the command has exited, even if processes it started
        are still running (is_running() then stays True until they are gone: kill() them or
        give them time with wait_until_empty()). Works whether or not the agent is the parent.
        """
        async with self._wait_lock:
            if self._exit_status is None:
                self._exit_status = await self._wait_for_command()
            return self._exit_status

    @abc.abstractmethod
    async def _wait_for_command(self) -> int: ...

    @abc.abstractmethod
    async def wait_until_empty(self) -> None:
        """Return once no process of the sandbox remains (the command and everything it left)."""

    @abc.abstractmethod
    def signal_all(self, sig: int) -> int:
        """Send sig to every process of the sandbox (never to bwrap's own helpers); returns how
        many got it. Processes that call setsid or double-fork are included."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL everything in the sandbox, at once."""

    @abc.abstractmethod
    def is_running(self) -> bool:
        """True while any process of the sandbox remains."""

    @abc.abstractmethod
    def record(self) -> dict[str, object]:
        """JSON-able; enough for Driver.adopt() and Driver.cleanup()."""

    def exec_command(self, uid: int, argv: Sequence[str]) -> list[str]:
        """The host command that runs argv inside this running sandbox (`waka ps:exec`): its
        namespaces, its cgroup, as uid with no privileges."""
        raise SandboxError("exec needs an isolated sandbox; this node runs dynos unisolated")

    @abc.abstractmethod
    def cleanup(self) -> None:
        """After the sandbox is empty: unmount, remove the writable layer and the run dir.
        Idempotent and safe on a partially set up sandbox; refuses while processes remain."""

    def _refuse_cleanup_while_running(self) -> None:
        if self.is_running():
            raise SandboxError(
                f"sandbox {self.run_dir} still has running processes; kill() and"
                " wait_until_empty() before cleanup()"
            )


class Driver(Protocol):
    isolated: bool

    def start(
        self, spec: SandboxSpec, run_dir: Path, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcess: ...

    def adopt(self, record: Mapping[str, object]) -> SandboxProcess | None:
        """The sandbox behind a record, or None if nothing of it runs any more (then clean it
        up with cleanup(record))."""
        ...

    def cleanup(self, record: Mapping[str, object]) -> None:
        """Remove what a sandbox that is gone left behind (its overlay mount, cgroup, run dir)."""
        ...

    def remove_stale_cgroups(self, in_use: Iterable[SandboxProcess]) -> list[str]:
        """At agent start, once every recorded sandbox is adopted: kill and remove the sandbox
        cgroups no sandbox in in_use owns (a crash between creating and recording one). Blocking.
        Returns their names."""
        ...

    def close(self) -> None:
        """At agent shutdown, after every sandbox is cleaned up: remove the agent's cgroup parent
        if it is empty (sandboxes that outlive the agent keep it)."""
        ...


# --------------------------------------------------------------------------------------------
# Choosing a driver


def pick_driver(
    *, allow_unisolated: bool, log: Callable[[str], None], cgroup_parent: str | None = None
) -> Driver:
    """bubblewrap when the agent is root and has it; the plain driver only when allowed, and
    never silently; otherwise an error naming what is missing.

    With cgroup_parent (a path from each cgroup hierarchy's root, one per agent, e.g.
    "waka/<agent>"), the bubblewrap driver enforces ResourceLimits in a cgroup per sandbox under
    it. Where cgroups cannot be used, it says so loudly and runs without limits.
    """
    problems = isolation_problems()
    if not problems:
        cgroups = None if cgroup_parent is None else _prepare_cgroups(cgroup_parent, log)
        return BubblewrapDriver(bwrap=_bwrap_path() or "", log=log, cgroups=cgroups)
    if not allow_unisolated:
        raise SandboxUnavailable(
            "cannot isolate dynos: "
            + "; ".join(problems)
            + ". (For development only, the agent can be allowed to run dynos unisolated.)"
        )
    warning = (
        "WARNING: dynos and builds will run WITHOUT ISOLATION, as plain processes that can see"
        " and change the whole host (" + "; ".join(problems) + "). Use this for development only."
    )
    log(warning)
    return PlainDriver(warning=warning)


def _prepare_cgroups(parent: str, log: Callable[[str], None]) -> Cgroups | None:
    try:
        cgroups = Cgroups.detect(parent)
        cgroups.prepare()
    except CgroupError as error:
        log(f"WARNING: dyno resource limits (memory, pids, cpu) will NOT be enforced: {error}")
        return None
    if cgroups.missing:
        log(
            "WARNING: the cgroup controller(s) "
            + ", ".join(sorted(cgroups.missing))
            + " are not available on this host: those dyno limits will NOT be enforced"
        )
    return cgroups


def isolation_problems() -> list[str]:
    """What stops the bubblewrap driver from working here (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the agent is not running as root (needed to mount and drop privileges)")
    if _bwrap_path() is None:
        problems.append(BWRAP_INSTALL_HINT)
    if not os.access(SETPRIV_PATH, os.X_OK):
        problems.append(f"{SETPRIV_PATH} is missing: apt-get install util-linux")
    return problems


def _bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/usr/local/bin:/bin")


# --------------------------------------------------------------------------------------------
# bubblewrap: arguments (pure)


@dataclass(frozen=True)
class HostRoot:
    """How the host's system dirs become the sandbox's read-only root."""

    read_only_dirs: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...]  # (link target, path), e.g. ("usr/bin", "/bin")
    # Where /etc/resolv.conf leads (systemd-resolved: a symlink into /run): what a sandbox with
    # a network namespace of its own gets its resolv.conf bound over.
    resolv_conf: str = "/etc/resolv.conf"

    @classmethod
    def detect(cls) -> HostRoot:
        read_only = [path for path in _SYSTEM_DIRS if os.path.isdir(path)]
        symlinks = []
        for path in _ROOT_LINKS_OR_DIRS:
            if os.path.islink(path):
                symlinks.append((os.readlink(path), path))
            elif os.path.isdir(path):
                read_only.append(path)
        return cls(
            read_only_dirs=tuple(read_only),
            symlinks=tuple(symlinks),
            resolv_conf=os.path.realpath("/etc/resolv.conf"),
        )


def bwrap_arguments(
    spec: SandboxSpec, *, app_source: Path, host_root: HostRoot, status_fd: int
) -> list[str]:
    """bwrap's options for spec (everything before `--`).

    They travel through a file descriptor (`--args`), not the command line: they hold the
    environment, i.e. config vars and their secrets, and any host user can read a command line.
    """
    args = [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        spec.hostname,
        # Own session: the command cannot reach the agent's terminal (TIOCSTI, CVE-2017-5226).
        "--new-session",
        # No --die-with-parent: dynos outlive the agent. No --unshare-net: the host's network,
        # or a namespace the sandbox was started in (spec.network, by nsenter).
        "--json-status-fd",
        str(status_fd),
    ]
    for path in host_root.read_only_dirs:
        args += ["--ro-bind", path, path]
    for link_target, path in host_root.symlinks:
        args += ["--symlink", link_target, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--bind", str(app_source), APP_PATH]
    # bwrap makes missing parents of a mount point mode 0700 (root only), which would hide
    # e.g. /waka/bin/uv from the unprivileged command: create them world-readable first.
    made: set[str] = {"/", APP_PATH}
    if spec.network is not None and spec.network.resolv_conf is not None:
        target = host_root.resolv_conf
        if not any(target.startswith(path + "/") for path in host_root.read_only_dirs):
            for parent in reversed(PurePosixPath(target).parents):
                if str(parent) not in made:
                    args += ["--perms", "0755", "--dir", str(parent)]
                    made.add(str(parent))
        args += ["--ro-bind", str(spec.network.resolv_conf), target]
    for bind in spec.binds:
        for parent in reversed(PurePosixPath(bind.target).parents):
            if str(parent) not in made and not str(parent).startswith(APP_PATH + "/"):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
    for bind in spec.binds:
        args += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    # Last mount operation: the root tmpfs (mount points only) becomes read-only too.
    args += ["--remount-ro", "/"]
    args += ["--chdir", spec.cwd, "--clearenv"]
    for name, value in spec.env.items():
        args += ["--setenv", name, value]
    return args


def privilege_drop_command(uid: int, argv: Sequence[str]) -> list[str]:
    """The command bwrap runs: setpriv drops to uid/gid, no groups, no capabilities (bounding,
    inheritable, ambient), no_new_privs, then execs argv (PATH lookup in the sandbox's env)."""
    return [
        SETPRIV_PATH,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
        *argv,
    ]


def _joining(cgroup: SandboxCgroup, command: list[str]) -> list[str]:
    """`command`, run after its process joined the cgroup (so everything it starts is in it)."""
    procs = cgroup.procs_files
    return [
        SH_PATH,
        "-c",
        _JOIN_CGROUPS_THEN_EXEC,
        "sh",
        str(len(procs)),
        *map(str, procs),
        *command,
    ]


def _nul_separated(args: Sequence[str]) -> bytes:
    return b"".join(arg.encode() + b"\0" for arg in args)


# --------------------------------------------------------------------------------------------
# bubblewrap: status file


@dataclass(frozen=True)
class BwrapStatus:
    """What bwrap wrote to --json-status-fd: the sandbox's pid 1, then the command's exit code."""

    child_pid: int | None = None
    pid_namespace: int | None = None
    exit_code: int | None = None

    @classmethod
    def read(cls, path: Path) -> BwrapStatus:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        fields: dict[str, int] = {}
        decoder = json.JSONDecoder()
        position = 0
        # Several JSON documents, one after another; a torn last one is ignored.
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            try:
                document, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                break
            if isinstance(document, dict):
                fields.update(document)
        return cls(
            child_pid=fields.get("child-pid"),
            pid_namespace=fields.get("pid-namespace"),
            exit_code=fields.get("exit-code"),
        )


# --------------------------------------------------------------------------------------------
# Mounts (ctypes: mount(2) is safe in a multi-threaded process; it acts on the whole namespace)

_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MNT_DETACH: Final = 0x2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_OVERLAY_UNSAFE = re.compile(r"[,:\\]")


def mount_overlay(*, lower: Path, upper: Path, work: Path, target: Path) -> None:
    for path in (lower, upper, work):
        if _OVERLAY_UNSAFE.search(str(path)):
            raise SandboxError(
                f"overlayfs cannot take the path {path} (it contains ',', ':' or '\\')"
            )
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", bytes(target), b"overlay", _MS_NOSUID | _MS_NODEV, options.encode()):
        code = ctypes.get_errno()
        hint = " (overlayfs is not available: modprobe overlay)" if code == errno.ENODEV else ""
        raise SandboxError(
            f"mounting the /app overlay on {target} failed: {os.strerror(code)}{hint}"
        )


def unmount_all(target: Path) -> None:
    """Detach every mount stacked on target; nothing to do if it is not a mount point."""
    while _libc.umount2(bytes(target), _MNT_DETACH) == 0:
        pass
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOENT):
        raise SandboxError(f"unmounting {target} failed: {os.strerror(code)}")


def _prepare_run_dir(run_dir: Path) -> Path:
    run_dir = run_dir.absolute()
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise SandboxError(f"cannot create the run dir {run_dir}: {error.strerror}") from error
    if any(run_dir.iterdir()):
        raise SandboxError(f"run dir {run_dir} is not empty; each sandbox needs a fresh one")
    return run_dir


def _remove_run_dir(run_dir: Path) -> None:
    unmount_all(run_dir / "app")
    _rmtree(run_dir)


def _rmtree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def _run_dir_from(record: Mapping[str, object]) -> Path:
    run_dir = record.get("run_dir")
    if not isinstance(run_dir, str) or not os.path.isabs(run_dir):
        raise ValueError(f"sandbox record has no absolute run_dir: {dict(record)!r}")
    return Path(run_dir)


def _check_driver(record: Mapping[str, object], name: str) -> None:
    if record.get("driver") != name:
        raise ValueError(f"record of driver {record.get('driver')!r} given to the {name} driver")


# --------------------------------------------------------------------------------------------
# bubblewrap: driver and process


class BubblewrapDriver:
    """Isolated sandboxes with bubblewrap; the agent must be root (see module docstring)."""

    isolated = True
    name: Final = "bubblewrap"

    def __init__(
        self,
        *,
        bwrap: str,
        log: Callable[[str], None],
        host_root: HostRoot | None = None,
        cgroups: Cgroups | None = None,
    ) -> None:
        if not os.path.isabs(bwrap):
            raise SandboxUnavailable(BWRAP_INSTALL_HINT)
        if cgroups is not None and not os.access(SH_PATH, os.X_OK):
            raise SandboxUnavailable(f"{SH_PATH} is missing (it puts sandboxes in their cgroup)")
        self._bwrap = bwrap
        self._log = log
        self._host_root = host_root or HostRoot.detect()
        self.cgroups = cgroups
        self._said_limits_ignored = False

    def start(
        self, spec: SandboxSpec, run_dir: Path, *, stdin: int, stdout: int, stderr: int
    ) -> BubblewrapProcess:
        if not spec.app_dir.is_dir():
            raise SandboxError(f"app dir {spec.app_dir} is not a directory")
        if spec.network is not None and not os.access(NSENTER_PATH, os.X_OK):
            raise SandboxError(f"{NSENTER_PATH} is missing (apt-get install util-linux)")
        self._mention_limits(spec)
        run_dir = _prepare_run_dir(run_dir)
        cgroup = None
        try:
            cgroup = self._create_cgroup(spec)
            app_source = self._prepare_app(spec, run_dir)
            options = bwrap_arguments(
                spec, app_source=app_source, host_root=self._host_root, status_fd=_STATUS_FD
            )
            command = [
                self._bwrap,
                "--args",
                str(_ARGS_FD),
                "--",
                *privilege_drop_command(spec.uid, spec.argv),
            ]
            if spec.network is not None:
                # nsenter execs bwrap: the same process, now in the namespace (about 1 ms).
                command = [NSENTER_PATH, f"--net={spec.network.path}", "--", *command]
            if cgroup is not None:
                command = _joining(cgroup, command)
            pid = self._spawn(command, options, run_dir, stdin=stdin, stdout=stdout, stderr=stderr)
        except BaseException as error:
            _remove_run_dir(run_dir)
            if cgroup is not None:
                with contextlib.suppress(CgroupError):
                    cgroup.remove()
            if isinstance(error, OSError | CgroupError):
                raise SandboxError(f"cannot start the sandbox {spec.hostname}: {error}") from error
            raise
        # We are bwrap's parent and have not reaped it, so it exists at least as a zombie.
        identity = identify(pid)
        handle = PidHandle.open(pid)
        assert identity is not None and handle is not None
        return BubblewrapProcess(identity, run_dir, outer=handle, cgroup=cgroup)

    def adopt(self, record: Mapping[str, object]) -> BubblewrapProcess | None:
        _check_driver(record, self.name)
        identity = ProcessIdentity.from_record(record)
        run_dir = _run_dir_from(record)
        outer = PidHandle.open(identity.pid, expect=identity)
        process = BubblewrapProcess(
            identity, run_dir, outer=outer, cgroup=self._cgroup_from(record)
        )
        if process.is_running():
            return process
        if outer is not None:
            outer.reap()  # a zombie child of ours (same-process adoption): collect it
        process.close()
        return None

    def cleanup(self, record: Mapping[str, object]) -> None:
        _check_driver(record, self.name)
        process = BubblewrapProcess(
            ProcessIdentity.from_record(record),
            _run_dir_from(record),
            cgroup=self._cgroup_from(record),
        )
        process.cleanup()

    def remove_stale_cgroups(self, in_use: Iterable[SandboxProcess]) -> list[str]:
        if self.cgroups is None:
            return []
        names = {process.cgroup.name for process in in_use if process.cgroup is not None}
        try:
            return self.cgroups.remove_stale(names)
        except CgroupError as error:
            raise SandboxError(f"cannot remove stale sandbox cgroups: {error}") from error

    def close(self) -> None:
        if self.cgroups is not None:
            try:
                self.cgroups.remove_parent()
            except CgroupError as error:
                raise SandboxError(str(error)) from error

    def _create_cgroup(self, spec: SandboxSpec) -> SandboxCgroup | None:
        if spec.limits is None or self.cgroups is None:
            return None
        # Unique per start: a restarted dyno's new sandbox never meets its predecessor's cgroup.
        name = f"{spec.hostname}-{secrets.token_hex(4)}"
        return self.cgroups.create(name, spec.limits.for_cgroup())

    def _cgroup_from(self, record: Mapping[str, object]) -> SandboxCgroup | None:
        cgroup = record.get("cgroup")
        if cgroup is None:
            return None
        if not isinstance(cgroup, Mapping):
            raise ValueError(f"sandbox record has a malformed cgroup: {cgroup!r}")
        if self.cgroups is not None:
            return self.cgroups.from_record(cgroup)
        return SandboxCgroup.from_record(cgroup)  # started when limits were on: still clean up

    def _prepare_app(self, spec: SandboxSpec, run_dir: Path) -> Path:
        if spec.app_mount is AppMount.BIND_RW:
            return spec.app_dir
        upper, work, merged = run_dir / "upper", run_dir / "work", run_dir / "app"
        upper.mkdir(mode=0o755)
        os.chown(upper, spec.uid, spec.uid)  # the overlay's root (/app) takes the upper's owner
        work.mkdir(mode=0o700)
        merged.mkdir(mode=0o755)
        mount_overlay(lower=spec.app_dir.absolute(), upper=upper, work=work, target=merged)
        return merged

    def _spawn(
        self,
        command: list[str],
        options: list[str],
        run_dir: Path,
        *,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> int:
        status_fd = os.open(
            run_dir / _STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        args_fd = os.memfd_create("waka-bwrap-args", os.MFD_CLOEXEC)
        try:
            data = memoryview(_nul_separated(options))
            while data:
                data = data[os.write(args_fd, data) :]
            os.lseek(args_fd, 0, os.SEEK_SET)
            return spawn(
                command,
                env={},  # bwrap runs as root: give it nothing from the app (LD_PRELOAD...)
                fds={0: stdin, 1: stdout, 2: stderr, _ARGS_FD: args_fd, _STATUS_FD: status_fd},
            )
        finally:
            os.close(args_fd)
            os.close(status_fd)

    def _mention_limits(self, spec: SandboxSpec) -> None:
        if spec.limits is not None and self.cgroups is None and not self._said_limits_ignored:
            self._said_limits_ignored = True
            self._log(
                "resource limits (memory, pids, cpu) are not enforced: the driver has no cgroups"
            )


class BubblewrapProcess(SandboxProcess):
    """bwrap (our pid) -> bwrap as the sandbox's pid 1 ("child-pid", reaps zombies) -> command.

    bwrap exits as soon as the command exits (writing its exit code); pid 1 stays while any
    process the command left behind still runs, so the sandbox's life is pid 1's.
    """

    def __init__(
        self,
        identity: ProcessIdentity,
        run_dir: Path,
        *,
        outer: PidHandle | None = None,
        cgroup: SandboxCgroup | None = None,
    ) -> None:
        super().__init__(identity, run_dir, cgroup)
        self._outer = outer
        self._init: PidHandle | None = None

    def record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "driver": BubblewrapDriver.name,
            **self.identity.to_record(),
            "run_dir": str(self.run_dir),
        }
        if self.cgroup is not None:
            record["cgroup"] = self.cgroup.to_record()
        return record

    def exec_command(self, uid: int, argv: Sequence[str]) -> list[str]:
        init = self._sandbox_init()
        if init is None or init.has_exited():
            raise SandboxError("the sandbox is not running")
        # The sandbox's root and working directory are pid 1's; nsenter forks into the PID
        # namespace, so the command is one of the sandbox's processes (and signal_all's).
        command = [
            NSENTER_PATH,
            f"--target={init.pid}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--root",
            "--wd",
            "--",
            *privilege_drop_command(uid, argv),
        ]
        return command if self.cgroup is None else _joining(self.cgroup, command)

    def is_running(self) -> bool:
        if self._outer is not None and not self._outer.has_exited():
            return True
        init = self._sandbox_init()
        if init is not None and not init.has_exited():
            return True
        # A pid 1 that bwrap never reported (bwrap killed right after cloning it) is still
        # in the cgroup.
        return self.cgroup is not None and self._cgroup_populated(self.cgroup)

    def _cgroup_populated(self, cgroup: SandboxCgroup) -> bool:
        try:
            return cgroup.is_populated()
        except CgroupError as error:
            raise SandboxError(f"cannot tell whether {self.run_dir} is empty: {error}") from error

    async def _wait_for_command(self) -> int:
        reaped = await self._outer.wait_exit() if self._outer is not None else None
        exit_code = BwrapStatus.read(self._status_path).exit_code
        if exit_code is not None:
            # bwrap folds "killed by signal N" into 128+N, like a shell.
            return status_from_shell_code(exit_code)
        # No exit code recorded: bwrap writes it only once the sandbox was fully set up. bwrap's
        # own exit status then tells (1: setup failed; 128+N: pid 1 was killed by signal N).
        if reaped is None:
            return EXIT_STATUS_UNKNOWN
        return status_from_shell_code(reaped) if reaped >= 0 else reaped

    _EMPTY_POLL_INTERVAL: Final = 0.02

    async def wait_until_empty(self) -> None:
        await self.wait()
        init = self._sandbox_init()
        if init is not None:
            await init.wait_exit()
        # Normally empty by now: everything else lived in pid 1's namespace. Only an unreported
        # pid 1 can remain, and no handle covers it, so poll (rare, and over within a kill).
        while self.cgroup is not None and self._cgroup_populated(self.cgroup):  # noqa: ASYNC110
            await trio.sleep(self._EMPTY_POLL_INTERVAL)

    def signal_all(self, sig: int) -> int:
        if self.cgroup is not None:
            return self._signal_cgroup(self.cgroup, sig)
        init = self._sandbox_init()
        if init is None or init.has_exited():
            return 0
        # Everything in the PID namespace descends from pid 1: orphans (double forks, setsid'd
        # daemons) are re-parented to it. Pid 1 itself is bwrap's reaper, not the app's.
        processes = live_descendants(init.pid)
        deadline = time.monotonic() + _SETUP_GRACE
        while not processes and not init.has_exited() and time.monotonic() < deadline:
            # Pid 1 alive with no descendant: bwrap is still building the sandbox (a few ms),
            # and a signal sent now would reach nobody. Nothing announces the end of setup,
            # so look again shortly rather than lose, say, the SIGTERM of a quick restart.
            time.sleep(0.002)
            processes = live_descendants(init.pid)
        return signal_processes(processes, sig)

    def _signal_cgroup(self, cgroup: SandboxCgroup, sig: int) -> int:
        """signal_all from the cgroup's member list: no walk over the whole process table.
        Everyone but bwrap itself (pid) and the namespace's pid 1 gets the signal."""
        deadline = time.monotonic() + _SETUP_GRACE
        try:
            while True:
                init = self._sandbox_init()
                helpers = {self.pid} if init is None else {self.pid, init.pid}
                members = [pid for pid in cgroup.pids() if pid not in helpers]
                if init is not None and init.has_exited():
                    return 0
                if init is not None and members:
                    return cgroup.signal(sig, exclude=helpers)
                if time.monotonic() > deadline or not self.is_running():
                    return 0
                # As in signal_all without a cgroup: still being set up, look again shortly.
                time.sleep(0.002)
        except CgroupError as error:
            raise SandboxError(f"cannot signal the sandbox {self.run_dir}: {error}") from error

    def kill(self) -> None:
        if self.cgroup is not None:
            # bwrap itself first: until the sh in front of it has joined the cgroup, it is the
            # only process and outside the cgroup; once joined, it has no way to start anything
            # that escapes. Then the namespace at once through pid 1 (even on cgroup v1), and
            # the cgroup for the rest: bwrap's pid 1 if not reported yet, or a racing fork.
            if self._outer is not None:
                self._outer.send_signal(signal.SIGKILL)
            init = self._sandbox_init()
            if init is not None:
                init.send_signal(signal.SIGKILL)
            try:
                self.cgroup.kill()
            except CgroupError as error:
                raise SandboxError(f"cannot kill the sandbox {self.run_dir}: {error}") from error
            return
        init = self._sandbox_init()
        if init is not None:
            init.send_signal(signal.SIGKILL)  # pid 1 dies: the kernel kills the whole namespace
            return
        outer = self._outer
        if outer is None or outer.has_exited():
            return
        # bwrap has not reported its pid 1 yet. Stop it so it cannot create one while we look,
        # then kill whichever exists: pid 1, or (before it was cloned) bwrap itself.
        outer.send_signal(signal.SIGSTOP)
        try:
            init = self._sandbox_init()
            if init is not None:
                init.send_signal(signal.SIGKILL)
                return
            children = live_descendants(outer.pid)
            if children:
                signal_processes(children, signal.SIGKILL)
            else:
                outer.send_signal(signal.SIGKILL)
        finally:
            outer.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self._refuse_cleanup_while_running()
        if self._outer is not None:
            self._outer.reap()
        self.close()
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except CgroupError as error:
                raise SandboxError(f"cannot clean up {self.run_dir}: {error}") from error
        _remove_run_dir(self.run_dir)

    def close(self) -> None:
        """Release the pidfds (cleanup() does this too)."""
        for handle in (self._outer, self._init):
            if handle is not None:
                handle.close()

    @property
    def _status_path(self) -> Path:
        return self.run_dir / _STATUS_FILE

    def _sandbox_init(self) -> PidHandle | None:
        """A handle on the sandbox's pid 1, once bwrap has reported it; None before or if gone.

        The pid comes from the status file and is trusted only if it still lives in the PID
        namespace bwrap reported, so a recycled pid is never signalled.
        """
        if self._init is None:
            status = BwrapStatus.read(self._status_path)
            if status.child_pid is None:
                return None
            handle = PidHandle.open(status.child_pid)
            if handle is None:
                return None
            if pid_namespace_of(status.child_pid) != status.pid_namespace:
                handle.close()
                return None
            self._init = handle
        return self._init


# --------------------------------------------------------------------------------------------
# Plain processes (development only)


class PlainDriver:
    """Runs the command as a plain process: NO isolation. For development machines only.

    The command runs in app_dir directly (writes land in the slug directory), sees the host's
    files and processes, and shares its network. On a root agent it still drops to spec.uid.
    Binds cannot be honoured without mounts, so a spec with binds is refused.
    """

    isolated = False
    name: Final = "plain"

    def __init__(self, *, warning: str) -> None:
        self.warning = warning
        env_program = shutil.which("env", path="/usr/bin:/bin")
        if env_program is None:
            raise SandboxUnavailable("the env program (coreutils) is missing")
        self._env_program = env_program

    def start(
        self, spec: SandboxSpec, run_dir: Path, *, stdin: int, stdout: int, stderr: int
    ) -> PlainProcess:
        if spec.network is not None:
            raise SandboxError(
                "the plain (unisolated) driver cannot run a dyno in a network namespace of its"
                " own (private-network); this needs the bubblewrap driver (run the agent as root)"
            )
        if spec.binds:
            raise SandboxError(
                "the plain (unisolated) driver cannot mount "
                + ", ".join(bind.target for bind in spec.binds)
                + "; this needs the bubblewrap driver (run the agent as root)"
            )
        if not spec.app_dir.is_dir():
            raise SandboxError(f"app dir {spec.app_dir} is not a directory")
        if "=" in spec.argv[0]:
            raise SandboxSpecError(f"program name {spec.argv[0]!r} must not contain '='")
        run_dir = _prepare_run_dir(run_dir)
        # env(1) changes directory for us: posix_spawn has no chdir, and the agent is threaded.
        command = [self._env_program, f"--chdir={spec.app_dir.absolute()}", "--", *spec.argv]
        if os.geteuid() == 0 and os.access(SETPRIV_PATH, os.X_OK):
            command = privilege_drop_command(spec.uid, command)
        try:
            pid = spawn(command, env=spec.env, fds={0: stdin, 1: stdout, 2: stderr})
        except BaseException as error:
            _rmtree(run_dir)
            if isinstance(error, OSError):
                raise SandboxError(f"cannot start {spec.hostname}: {error}") from error
            raise
        identity = identify(pid)
        handle = PidHandle.open(pid)
        assert identity is not None and handle is not None
        return PlainProcess(identity, run_dir, handle)

    def adopt(self, record: Mapping[str, object]) -> PlainProcess | None:
        _check_driver(record, self.name)
        identity = ProcessIdentity.from_record(record)
        handle = PidHandle.open(identity.pid, expect=identity)
        if handle is None:
            return None
        process = PlainProcess(identity, _run_dir_from(record), handle)
        if process.is_running():
            return process
        handle.reap()
        handle.close()
        return None

    def cleanup(self, record: Mapping[str, object]) -> None:
        _check_driver(record, self.name)
        _rmtree(_run_dir_from(record))

    def remove_stale_cgroups(self, in_use: Iterable[SandboxProcess]) -> list[str]:
        return []  # plain processes have no cgroups

    def close(self) -> None:
        pass


class PlainProcess(SandboxProcess):
    """The command itself (a session leader). Its "sandbox" is its session and descendants; a
    process that both calls setsid and double-forks escapes it (no namespace to hold it)."""

    _EMPTY_POLL_INTERVAL: Final = 0.1

    def __init__(self, identity: ProcessIdentity, run_dir: Path, handle: PidHandle) -> None:
        super().__init__(identity, run_dir)
        self._handle = handle

    def record(self) -> dict[str, object]:
        return {
            "driver": PlainDriver.name,
            **self.identity.to_record(),
            "run_dir": str(self.run_dir),
        }

    def is_running(self) -> bool:
        return not self._handle.has_exited() or bool(self._members())

    async def _wait_for_command(self) -> int:
        status = await self._handle.wait_exit()
        # Only the parent sees the status; an adopting agent cannot know it.
        return status if status is not None else EXIT_STATUS_UNKNOWN

    async def wait_until_empty(self) -> None:
        await self.wait()
        # No handle covers a whole session, so poll (development only).
        while self._members():  # noqa: ASYNC110 - nothing to wait on but the process table
            await trio.sleep(self._EMPTY_POLL_INTERVAL)

    def signal_all(self, sig: int) -> int:
        return signal_processes(self._members(), sig)

    def kill(self) -> None:
        signal_processes(self._members(), signal.SIGKILL)

    def cleanup(self) -> None:
        self._refuse_cleanup_while_running()
        self._handle.reap()
        self._handle.close()
        _rmtree(self.run_dir)

    def _members(self) -> list[psutil.Process]:
        members = {process.pid: process for process in session_members(self.pid)}
        if not self._handle.has_exited():
            with contextlib.suppress(psutil.NoSuchProcess):
                members.setdefault(self.pid, psutil.Process(self.pid))
            for process in live_descendants(self.pid):
                members.setdefault(process.pid, process)
        return list(members.values())
