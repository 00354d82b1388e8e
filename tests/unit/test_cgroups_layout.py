"""Telling cgroup setups apart from /proc/self/mountinfo, and where each controller goes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from waka.agent._cgroups import (
    CgroupLayout,
    Cgroups,
    CgroupUnavailable,
    Hierarchy,
    agent_cgroup_parent,
    parse_mountinfo,
)

# This VM (Debian 12 image, kernel 6.x): v1 controllers, cgroup2 beside them with none.
HYBRID = """\
23 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# Debian 12 / Ubuntu 22.04+ default (systemd, unified): one cgroup2 mount, optional fields.
UNIFIED = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9"
    " - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)

# CentOS 7 / Debian 10 style: v1 only, cpu and cpuacct mounted together, systemd's named one.
LEGACY = (
    "24 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755\n"
    "25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid shared:5 - cgroup cgroup"
    " rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd\n"
    "28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup rw,cpu,cpuacct\n"
    "30 24 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory\n"
    "31 24 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:11 - cgroup cgroup rw,pids\n"
)

NONE = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
CONTROLLERS = {"memory", "pids", "cpu"}


def v2(*controllers: str, at: str = "/sys/fs/cgroup") -> Hierarchy:
    return Hierarchy(Path(at), 2, frozenset(controllers))


def v1(*controllers: str, at: str) -> Hierarchy:
    return Hierarchy(Path(at), 1, frozenset(controllers))


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (
            HYBRID,
            [
                v1("cpu", at="/sys/fs/cgroup/cpu"),
                v1("cpuacct", at="/sys/fs/cgroup/cpuacct"),
                v1("memory", at="/sys/fs/cgroup/memory"),
                v1("pids", at="/sys/fs/cgroup/pids"),
                v2(at="/sys/fs/cgroup/unified"),
            ],
        ),
        (UNIFIED, [v2()]),
        (
            LEGACY,
            [
                v1("cpu", "cpuacct", at="/sys/fs/cgroup/cpu,cpuacct"),
                v1("memory", at="/sys/fs/cgroup/memory"),
                v1("pids", at="/sys/fs/cgroup/pids"),
            ],
        ),
        (NONE, []),
        # Octal escapes in mount points; the same hierarchy mounted twice counts once.
        (
            "40 31 0:38 / /srv/cgroup\\040two rw - cgroup2 cgroup2 rw\n"
            "41 31 0:38 / /mnt/again rw - cgroup2 cgroup2 rw\n",
            [v2(at="/srv/cgroup two")],
        ),
        ("garbage without separator\n", []),
    ],
    ids=["hybrid", "unified", "legacy", "none", "escaped-and-duplicate", "garbage"],
)
def test_mountinfo_names_each_hierarchy_and_its_controllers(
    mountinfo: str, expected: list[Hierarchy]
) -> None:
    assert parse_mountinfo(mountinfo) == expected


class ControllersFile:
    """Just enough of CgroupFS for detect(): each cgroup2 root's cgroup.controllers."""

    def __init__(self, listed: dict[str, str]) -> None:
        self.listed = listed

    def read(self, path: Path) -> str:
        return self.listed[str(path)]


@pytest.mark.parametrize(
    ("mountinfo", "listed", "mode"),
    [
        (HYBRID, {"/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n"}, "hybrid"),
        (UNIFIED, {"/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n"}, "v2"),
        (LEGACY, {}, "v1"),
        (NONE, {}, "none"),
    ],
)
def test_detect_reads_cgroup2_controllers_and_names_the_mode(
    mountinfo: str, listed: dict[str, str], mode: str
) -> None:
    layout = CgroupLayout.detect(ControllersFile(listed), mountinfo)  # type: ignore[arg-type]
    assert layout.mode == mode
    if layout.unified is not None:
        assert layout.unified.controllers == frozenset(next(iter(listed.values())).split())


def layout(mountinfo: str, v2_controllers: str = "") -> CgroupLayout:
    listed = {
        f"{h.mount_point}/cgroup.controllers": v2_controllers
        for h in parse_mountinfo(mountinfo)
        if h.version == 2
    }
    return CgroupLayout.detect(ControllersFile(listed), mountinfo)  # type: ignore[arg-type]


def placed(layout: CgroupLayout) -> list[tuple[str, set[str]]]:
    return [(str(p.hierarchy.mount_point), set(p.controllers)) for p in layout.placements()]


@pytest.mark.parametrize(
    ("setup", "expected", "missing"),
    [
        # Hybrid: controllers from v1; cgroup2 first, with none, to track the processes.
        (
            layout(HYBRID, "hugetlb"),
            [
                ("/sys/fs/cgroup/unified", set()),
                ("/sys/fs/cgroup/memory", {"memory"}),
                ("/sys/fs/cgroup/pids", {"pids"}),
                ("/sys/fs/cgroup/cpu", {"cpu"}),
            ],
            set(),
        ),
        # A controller no v1 hierarchy holds is taken from cgroup2.
        (
            layout(HYBRID.replace("rw,pids", "rw,freezer"), "pids"),
            [
                ("/sys/fs/cgroup/unified", {"pids"}),
                ("/sys/fs/cgroup/memory", {"memory"}),
                ("/sys/fs/cgroup/cpu", {"cpu"}),
            ],
            set(),
        ),
        (layout(UNIFIED, "cpuset cpu io memory pids"), [("/sys/fs/cgroup", CONTROLLERS)], set()),
        # Raspberry Pi OS boots with cgroup_disable=memory:
        (layout(UNIFIED, "cpu pids"), [("/sys/fs/cgroup", {"cpu", "pids"})], {"memory"}),
        # Pure v1: the memory hierarchy comes first and tracks the processes.
        (
            layout(LEGACY),
            [
                ("/sys/fs/cgroup/memory", {"memory"}),
                ("/sys/fs/cgroup/pids", {"pids"}),
                ("/sys/fs/cgroup/cpu,cpuacct", {"cpu"}),
            ],
            set(),
        ),
        (layout(NONE), [], CONTROLLERS),
    ],
    ids=["hybrid", "hybrid-pids-in-v2", "unified", "unified-no-memory", "legacy", "none"],
)
def test_each_controller_goes_to_the_hierarchy_that_has_it(
    setup: CgroupLayout, expected: list[tuple[str, set[str]]], missing: set[str]
) -> None:
    assert placed(setup) == expected
    assert setup.missing() == missing


def test_no_hierarchy_at_all_is_an_error_that_says_so() -> None:
    with pytest.raises(CgroupUnavailable, match="no cgroup hierarchy is mounted"):
        Cgroups(layout(NONE), "waka/agent")


@pytest.mark.parametrize("parent", ["", "/", "../escape", "waka/../../etc"])
def test_a_parent_that_is_not_a_plain_path_is_refused(parent: str) -> None:
    with pytest.raises(ValueError, match="must be a plain path"):
        Cgroups(layout(UNIFIED, "memory"), parent)


def test_a_leading_slash_in_the_parent_means_the_same_path() -> None:
    cgroups = Cgroups(layout(UNIFIED, "memory pids cpu"), "/waka/agent")
    assert cgroups.parent_dirs() == [Path("/sys/fs/cgroup/waka/agent")]


def test_each_agent_data_dir_gets_its_own_stable_parent(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert agent_cgroup_parent(first) == agent_cgroup_parent(first)
    assert agent_cgroup_parent(first) != agent_cgroup_parent(second)
    assert re.fullmatch(r"waka/[0-9a-f]{12}", agent_cgroup_parent(first))
