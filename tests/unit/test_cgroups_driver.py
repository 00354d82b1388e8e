"""How the sandbox driver turns dyno limits into cgroup limits, and says when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from waka.agent import _sandbox
from waka.agent._cgroups import CgroupError, CgroupLayout, CgroupLimits, Cgroups, Hierarchy
from waka.agent._sandbox import BubblewrapDriver, ResourceLimits, pick_driver

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # Heroku's standard-1x: 512 MB quota, killed at twice it; bwrap's 2 processes on top.
        (ResourceLimits(512 * MIB, 256, 1024), CgroupLimits(1024 * MIB, 258, 1024)),
        (ResourceLimits(memory_bytes=64 * MIB), CgroupLimits(memory_max_bytes=128 * MIB)),
        (ResourceLimits(max_pids=1), CgroupLimits(pids_max=3)),
        (ResourceLimits(), CgroupLimits()),
    ],
)
def test_dyno_limits_become_cgroup_limits(limits: ResourceLimits, expected: CgroupLimits) -> None:
    assert limits.for_cgroup() == expected


@pytest.fixture
def isolation_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sandbox, "isolation_problems", list)
    monkeypatch.setattr(_sandbox, "_bwrap_path", lambda: "/usr/bin/bwrap")


def test_cgroups_that_cannot_be_set_up_are_a_loud_warning_not_a_failure(
    isolation_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(parent: str) -> Cgroups:
        raise CgroupError("cannot create the cgroup /sys/fs/cgroup/waka: Read-only file system")

    monkeypatch.setattr(_sandbox.Cgroups, "detect", staticmethod(refuse))
    logged: list[str] = []
    driver = pick_driver(allow_unisolated=False, log=logged.append, cgroup_parent="waka/a")
    assert isinstance(driver, BubblewrapDriver)
    assert driver.cgroups is None
    assert logged == [
        "WARNING: dyno resource limits (memory, pids, cpu) will NOT be enforced: cannot create"
        " the cgroup /sys/fs/cgroup/waka: Read-only file system"
    ]


def test_a_missing_controller_is_named_once_at_start(
    isolation_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = CgroupLayout.from_hierarchies([Hierarchy(Path("/cg"), 2, frozenset({"cpu", "pids"}))])
    cgroups = Cgroups(layout, "waka/a")
    monkeypatch.setattr(_sandbox.Cgroups, "detect", staticmethod(lambda parent: cgroups))
    monkeypatch.setattr(Cgroups, "prepare", lambda self: None)
    logged: list[str] = []
    driver = pick_driver(allow_unisolated=False, log=logged.append, cgroup_parent="waka/a")
    assert isinstance(driver, BubblewrapDriver)
    assert driver.cgroups is cgroups
    assert logged == [
        "WARNING: the cgroup controller(s) memory are not available on this host: those dyno"
        " limits will NOT be enforced"
    ]


def test_without_a_cgroup_parent_the_driver_has_no_cgroups(isolation_available: None) -> None:
    driver = pick_driver(allow_unisolated=False, log=print)
    assert isinstance(driver, BubblewrapDriver)
    assert driver.cgroups is None
    assert driver.remove_stale_cgroups([]) == []
    driver.close()
