"""Heroku's memory rules for one dyno, as a pure policy: R14 above the quota, R15 at twice it.

Heroku lets a dyno exceed its memory quota and says so: while over, it logs

    Process running mem=1028M(100.4%)
    Error R14 (Memory quota exceeded)

at most once every `r14_interval` seconds. At twice the quota (R15) it stops the dyno:

    Process running mem=2049M(200.1%)
    Error R15 (Memory quota vastly exceeded)
    Stopping process with SIGKILL

and the dyno restarts as after any crash. In waka the kernel enforces the same line: the sandbox's
cgroup has a hard limit of twice the quota, so the OOM killer usually acts before a sample can
show usage above it. An OOM kill counts as R15 too (the sample carries the cgroup's running count
of OOM kills), and the whole dyno is then stopped, not just the process the kernel picked.

The policy is fed samples (time, bytes used, OOM kills so far) and answers with the lines to log
and whether to kill. Time comes with the samples, so tests replay any history without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KILL_FACTOR: Final = 2  # R15 for Heroku's standard sizes: twice the quota
DEFAULT_R14_INTERVAL: Final = 20.0  # seconds between R14 reports while over the quota
_MIB: Final = 1024 * 1024


def kill_threshold(quota_bytes: int) -> int:
    """Bytes at which a dyno with this quota is stopped (R15); also the cgroup's hard limit."""
    return quota_bytes * KILL_FACTOR


@dataclass(frozen=True)
class MemorySample:
    time: float  # seconds, any monotonic origin
    used_bytes: int  # what R14 counts (see MemoryUsage.resident)
    oom_kills: int = 0  # processes the kernel OOM-killed in the sandbox so far (a running count)


@dataclass(frozen=True)
class MemoryVerdict:
    lines: tuple[str, ...] = ()  # platform log lines, in order
    kill: bool = False  # stop the whole dyno with SIGKILL now

    def __bool__(self) -> bool:
        return bool(self.lines) or self.kill


NOTHING: Final = MemoryVerdict()


def running_line(used_bytes: int, quota_bytes: int) -> str:
    return f"Process running mem={round(used_bytes / _MIB)}M({used_bytes * 100 / quota_bytes:.1f}%)"


class MemoryPolicy:
    """One sandbox's memory history. Make a new one for each start of the dyno."""

    def __init__(
        self,
        quota_bytes: int,
        *,
        r14_interval: float = DEFAULT_R14_INTERVAL,
        oom_kills_seen: int = 0,
    ) -> None:
        """oom_kills_seen: the OOM count already accounted for (an adopted sandbox's current
        count, so events from before an agent restart are not reported twice)."""
        if quota_bytes <= 0:
            raise ValueError(f"memory quota must be positive, got {quota_bytes}")
        self.quota_bytes = quota_bytes
        self.kill_bytes = kill_threshold(quota_bytes)
        self._r14_interval = r14_interval
        self._oom_kills_seen = oom_kills_seen
        self._last_r14: float | None = None
        self._killed = False

    def observe(self, sample: MemorySample) -> MemoryVerdict:
        if self._killed:
            return NOTHING  # the kill is under way; the next start gets a new policy
        oom_killed = sample.oom_kills > self._oom_kills_seen
        self._oom_kills_seen = max(self._oom_kills_seen, sample.oom_kills)
        if oom_killed or sample.used_bytes > self.kill_bytes:
            self._killed = True
            # After an OOM kill the memory is already freed; the kernel acted at the hard limit,
            # which is the figure that triggered it.
            used = max(sample.used_bytes, self.kill_bytes) if oom_killed else sample.used_bytes
            return MemoryVerdict(
                lines=(
                    running_line(used, self.quota_bytes),
                    "Error R15 (Memory quota vastly exceeded)",
                    "Stopping process with SIGKILL",
                ),
                kill=True,
            )
        if sample.used_bytes <= self.quota_bytes:
            return NOTHING
        # Rate-limited over time, not per excursion: a dyno hovering around its quota must not
        # log a pair on every sample.
        if self._last_r14 is not None and sample.time - self._last_r14 < self._r14_interval:
            return NOTHING
        self._last_r14 = sample.time
        return MemoryVerdict(
            lines=(
                running_line(sample.used_bytes, self.quota_bytes),
                "Error R14 (Memory quota exceeded)",
            )
        )
