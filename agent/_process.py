"""The agent's one door to the OS for processes: spawn, identify, signal and wait.

Everything here must work whether or not the agent is the parent of the process: dynos outlive the
agent, and a restarted agent re-adopts processes that init (or a subreaper) now parents. So waiting
goes through a pidfd (readable when the process exits, whoever reaps it) and identity is checked
against the process's start time so a recycled pid is never mistaken for ours.

Exit statuses follow one convention throughout the agent: ``>= 0`` is an exit code, ``-N`` means
killed by signal N.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio

_PROC = Path("/proc")

# Signals are reset to their default action in every spawned process. The agent (Python) ignores
# SIGPIPE, and ignored dispositions survive exec: a dyno would otherwise never die of a broken
# pipe. SIGKILL and SIGSTOP cannot be changed, so they are left out.
_SIGNALS_TO_RESET = frozenset(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})

_SPAWN_ERRORS = {
    errno.EAGAIN: "the system refused another process (process limit reached)",
    errno.EMFILE: "the agent has too many open files",
    errno.ENFILE: "the system has too many open files",
    errno.ENOMEM: "not enough memory",
    errno.ENOENT: "the program does not exist",
    errno.EACCES: "the program is not executable",
}


class SpawnError(OSError):
    """A process could not be started; the message says which and why."""


@dataclass(frozen=True)
class ProcessIdentity:
    """Names one process for its whole life, even across agent restarts and pid reuse.

    ``start_ticks`` (clock ticks since boot, from /proc/<pid>/stat) and ``boot_id`` identify the
    process; ``start_time`` (psutil's wall-clock create_time) is for people. Wall-clock time is not
    used for identity because it moves when the clock is stepped (NTP after boot), which would make
    a restarted agent think every dyno had vanished.
    """

    pid: int
    start_ticks: int
    boot_id: str
    start_time: float

    def to_record(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
            "start_time": self.start_time,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ProcessIdentity:
        pid, ticks, boot, started = (
            record.get(key) for key in ("pid", "start_ticks", "boot_id", "start_time")
        )
        if not (
            isinstance(pid, int)
            and isinstance(ticks, int)
            and isinstance(boot, str)
            and isinstance(started, int | float)
        ):
            raise ValueError(
                f"not a process record (pid, start_ticks, boot_id, start_time): {dict(record)!r}"
            )
        return cls(pid=pid, start_ticks=ticks, boot_id=boot, start_time=float(started))


def spawn(argv: Sequence[str], *, env: Mapping[str, str], fds: Mapping[int, int]) -> int:
    """Start ``argv`` in a new session and return its pid.

    ``argv[0]`` must be an absolute path (no PATH lookup happens here). ``fds`` maps each fd number
    the child gets to an fd of ours, e.g. ``{0: stdin, 1: out, 2: out, 3: status}``; it must
    name 0, 1 and 2 so none of the agent's own stdio leaks in. No other fd is inherited: Python
    opens everything close-on-exec, the mapped ones are dup'ed in the child only, and fds the
    agent itself inherited from whoever started it (not close-on-exec) are closed in the child.
    Uses posix_spawn (vfork+exec), never fork+preexec_fn: the agent is multi-threaded.
    """
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError(f"spawn needs an absolute program path, got {list(argv)[:1]!r}")
    missing = {0, 1, 2} - set(fds)
    if missing:
        raise ValueError(f"spawn must be given stdin, stdout and stderr; missing fds {missing}")
    # Move every source fd above the highest target first, so that no dup2 in the child can
    # overwrite a source that a later dup2 still needs (e.g. stdout source 3 with a target 3).
    floor = max(fds) + 1
    staged: dict[int, int] = {}
    try:
        for target, source in fds.items():
            staged[target] = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor)
        file_actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds() if fd not in staged.values()
        ]
        file_actions += [(os.POSIX_SPAWN_DUP2, source, target) for target, source in staged.items()]
        try:
            return os.posix_spawn(
                argv[0],
                list(argv),
                dict(env),
                file_actions=file_actions,
                setsid=True,
                setsigdef=_SIGNALS_TO_RESET,
                setsigmask=(),
            )
        except OSError as error:
            reason = _SPAWN_ERRORS.get(error.errno or 0, error.strerror)
            raise SpawnError(error.errno, f"could not start {argv[0]}: {reason}") from error
    finally:
        for staged_fd in staged.values():
            os.close(staged_fd)


def _inherited_fds() -> list[int]:
    """Our fds above stderr that an exec would pass on (typically inherited from our parent)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                continue  # listdir's own directory fd, closed by now
    return found


def boot_id() -> str:
    return (_PROC / "sys/kernel/random/boot_id").read_text().strip()


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of a live (or zombie) process, or None if there is no such pid."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return None
    try:
        start_time = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    return ProcessIdentity(pid=pid, start_ticks=ticks, boot_id=boot_id(), start_time=start_time)


def _start_ticks(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after the last ')'
    # start at field 3 (state), so starttime (field 22) is index 19 there.
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def pid_namespace_of(pid: int) -> int | None:
    """Inode of the pid's PID namespace (stable name of a sandbox), or None if it is gone."""
    try:
        return os.stat(_PROC / str(pid) / "ns" / "pid").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def status_from_waitid(result: os.waitid_result) -> int:
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


def status_from_shell_code(code: int) -> int:
    """Map a shell-style exit code (128+N for "killed by signal N") to the agent's convention.

    Used where only such a folded code exists (bubblewrap reports its child that way). A program
    that itself calls exit(143) is therefore reported as killed by SIGTERM, exactly as `$?` does.
    """
    signum = code - 128
    if 0 < signum < signal.NSIG:
        return -signum
    return code


class PidHandle:
    """A pidfd: a reference to exactly one process that a recycled pid cannot fool.

    Waiting works for any process (the pidfd becomes readable when it exits); reaping and the
    exact exit status are only available when the agent happens to be its parent.
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd = fd
        self._status: int | None = None
        self._reaped = False
        self._wait_lock = trio.Lock()  # trio allows one waiter per fd; later ones queue here
        self._closer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, pid: int, *, expect: ProcessIdentity | None = None) -> PidHandle | None:
        """Open a handle on pid, or None if it is gone or (given ``expect``) is another process.

        The pidfd is opened before the identity check, so a pid recycled between the two steps
        is caught by the check instead of slipping into the handle.
        """
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        handle = cls(pid, fd)
        if expect is not None:
            current = identify(pid)
            if current is None or (current.start_ticks, current.boot_id) != (
                expect.start_ticks,
                expect.boot_id,
            ):
                handle.close()
                return None
        return handle

    def has_exited(self) -> bool:
        """True once the process has exited (a zombie counts as exited), or the handle closed."""
        if not self._closer.alive:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    def send_signal(self, sig: int) -> bool:
        """Signal the process; False if it has already exited."""
        if self.has_exited():
            return False
        try:
            signal.pidfd_send_signal(self._fd, sig)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> int | None:
        """Collect the exit status if the process has exited and is our child; else None."""
        if self._reaped or not self._closer.alive:
            return self._status
        try:
            result = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return None  # not our child (adopted after an agent restart), or already reaped
        if result is None:
            return None
        self._reaped = True
        self._status = status_from_waitid(result)
        return self._status

    async def wait_exit(self) -> int | None:
        """Wait until the process exits; its status if it was our child, else None."""
        async with self._wait_lock:
            if not self.has_exited():
                await trio.lowlevel.wait_readable(self._fd)
        return self.reap()

    def close(self) -> None:
        """Release the pidfd; the handle then reports the process as exited."""
        self._closer()


def live_descendants(pid: int) -> list[psutil.Process]:
    """Every live (non-zombie) descendant of pid, however deep; empty if pid is gone."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if _is_live(child)]


def session_members(session_id: int) -> list[psutil.Process]:
    """Every live process whose session id is ``session_id`` (a setsid'd process group's tree)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id and _is_live(process):
                members.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _is_live(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def signal_processes(processes: Sequence[psutil.Process], sig: int) -> int:
    """Send sig to each process still alive; returns how many got it.

    psutil refuses to signal a process whose pid has been reused since it was listed.
    """
    delivered = 0
    for process in processes:
        try:
            process.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        delivered += 1
    return delivered
