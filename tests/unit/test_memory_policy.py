"""R14 and R15 as Heroku logs them, replayed from sample histories (no clock, no processes)."""

from __future__ import annotations

import pytest

from waka.agent._memory import (
    KILL_FACTOR,
    MemoryPolicy,
    MemorySample,
    MemoryVerdict,
    kill_threshold,
    running_line,
)

MIB = 1024 * 1024
QUOTA = 512 * MIB
R14 = "Error R14 (Memory quota exceeded)"
R15 = "Error R15 (Memory quota vastly exceeded)"
SIGKILL = "Stopping process with SIGKILL"


def r14(mib: int, percent: str) -> MemoryVerdict:
    return MemoryVerdict(lines=(f"Process running mem={mib}M({percent}%)", R14))


def r15(mib: int, percent: str) -> MemoryVerdict:
    return MemoryVerdict(lines=(f"Process running mem={mib}M({percent}%)", R15, SIGKILL), kill=True)


QUIET = MemoryVerdict()

# Each case: samples as (seconds, MiB used, OOM kills so far) and the verdict for each.
CASES = {
    "under the quota: nothing": [
        ((0, 100, 0), QUIET),
        ((10, 512, 0), QUIET),  # exactly the quota is not over it
    ],
    "over the quota: R14 with Heroku's two lines": [
        ((0, 529, 0), r14(529, "103.3")),
    ],
    "still over: R14 again only once the interval has passed": [
        ((0, 600, 0), r14(600, "117.2")),
        ((5, 610, 0), QUIET),
        ((19.9, 620, 0), QUIET),
        ((20, 630, 0), r14(630, "123.0")),
        ((25, 640, 0), QUIET),
    ],
    "hovering around the quota: still at most once per interval": [
        ((0, 520, 0), r14(520, "101.6")),
        ((5, 500, 0), QUIET),
        ((10, 520, 0), QUIET),
        ((21, 520, 0), r14(520, "101.6")),
    ],
    "above twice the quota: R15 and the kill, once": [
        ((0, 600, 0), r14(600, "117.2")),
        ((5, 1025, 0), r15(1025, "200.2")),
        ((10, 1100, 0), QUIET),
    ],
    "the kernel OOM-killed at the hard limit: R15 shows the limit": [
        ((0, 300, 0), QUIET),
        ((5, 40, 1), r15(1024, "200.0")),
        ((10, 40, 2), QUIET),  # the kill is under way: no repeat
    ],
    "OOM kill counted before the first sample still counts": [
        ((0, 0, 1), r15(1024, "200.0")),
    ],
}


@pytest.mark.parametrize("history", CASES.values(), ids=CASES.keys())
def test_memory_policy(history: list[tuple[tuple[float, int, int], MemoryVerdict]]) -> None:
    policy = MemoryPolicy(QUOTA, r14_interval=20)
    for (time, mib, oom_kills), expected in history:
        verdict = policy.observe(MemorySample(time, mib * MIB, oom_kills))
        assert verdict == expected, (time, mib, oom_kills)


def test_an_adopted_sandbox_does_not_report_oom_kills_from_before_the_restart() -> None:
    policy = MemoryPolicy(QUOTA, oom_kills_seen=3)
    assert policy.observe(MemorySample(0, 100 * MIB, 3)) == QUIET
    assert policy.observe(MemorySample(5, 100 * MIB, 4)).kill


def test_the_hard_limit_is_twice_the_quota() -> None:
    assert KILL_FACTOR == 2
    assert kill_threshold(512 * MIB) == 1024 * MIB
    assert MemoryPolicy(QUOTA).kill_bytes == 1024 * MIB


@pytest.mark.parametrize(
    ("used", "quota", "line"),
    [
        (1028 * MIB, 1024 * MIB, "Process running mem=1028M(100.4%)"),
        (int(1.5 * MIB), 256 * MIB, "Process running mem=2M(0.6%)"),
        (0, 512 * MIB, "Process running mem=0M(0.0%)"),
    ],
)
def test_running_line_formats_like_heroku(used: int, quota: int, line: str) -> None:
    assert running_line(used, quota) == line


def test_a_quota_must_be_positive() -> None:
    with pytest.raises(ValueError, match="memory quota must be positive"):
        MemoryPolicy(0)


def test_verdict_is_false_when_there_is_nothing_to_do() -> None:
    assert not MemoryVerdict()
    assert MemoryVerdict(lines=("x",))
