"""Pure parts of the sandbox: spec validation, bwrap arguments, status parsing, driver choice."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from waka.agent import _sandbox
from waka.agent._process import status_from_shell_code
from waka.agent._sandbox import (
    AppMount,
    Bind,
    BubblewrapDriver,
    BwrapStatus,
    HostRoot,
    PlainDriver,
    SandboxSpec,
    SandboxSpecError,
    SandboxUnavailable,
    bwrap_arguments,
    pick_driver,
    privilege_drop_command,
)

MERGED_USR = HostRoot(
    read_only_dirs=("/usr", "/etc"),
    symlinks=(("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib")),
)


def make_spec(**changes: object) -> SandboxSpec:
    fields: dict[str, object] = {
        "hostname": "web.1",
        "argv": ["bash", "-c", "exec python app.py"],
        "env": {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgres://u:secret@db/app"},
        "uid": 10001,
        "app_dir": Path("/srv/slugs/abc"),
        "app_mount": AppMount.OVERLAY,
    }
    fields.update(changes)
    return SandboxSpec(**fields)  # type: ignore[arg-type]


def arguments(spec: SandboxSpec) -> list[str]:
    return bwrap_arguments(
        spec, app_source=Path("/run/waka/web.1/app"), host_root=MERGED_USR, status_fd=4
    )


def pairs(args: list[str], option: str, width: int) -> list[tuple[str, ...]]:
    return [tuple(args[i + 1 : i + 1 + width]) for i, arg in enumerate(args) if arg == option]


def test_bwrap_unshares_pid_ipc_uts_but_keeps_host_network_and_outlives_the_agent() -> None:
    args = arguments(make_spec())
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session"} <= set(args)
    assert "--unshare-net" not in args
    assert "--die-with-parent" not in args
    assert pairs(args, "--hostname", 1) == [("web.1",)]
    assert pairs(args, "--json-status-fd", 1) == [("4",)]


def test_bwrap_root_is_the_host_system_read_only_with_fresh_proc_dev_tmp() -> None:
    args = arguments(make_spec())
    assert pairs(args, "--ro-bind", 2)[:2] == [("/usr", "/usr"), ("/etc", "/etc")]
    assert pairs(args, "--symlink", 2) == [
        ("usr/bin", "/bin"),
        ("usr/sbin", "/sbin"),
        ("usr/lib", "/lib"),
    ]
    assert pairs(args, "--proc", 1) == [("/proc",)]
    assert pairs(args, "--dev", 1) == [("/dev",)]
    assert pairs(args, "--tmpfs", 1) == [("/tmp",), ("/dev/shm",)]
    assert pairs(args, "--perms", 1) == [("1777",), ("1777",)]


def test_bwrap_shows_the_prepared_app_tree_at_app_and_honours_bind_modes() -> None:
    spec = make_spec(
        app_mount=AppMount.BIND_RW,
        binds=[Bind(Path("/var/cache/b1"), "/cache", writable=True), Bind(Path("/e"), "/env")],
    )
    args = arguments(spec)
    assert pairs(args, "--bind", 2) == [
        ("/run/waka/web.1/app", "/app"),
        ("/var/cache/b1", "/cache"),
    ]
    assert ("/e", "/env") in pairs(args, "--ro-bind", 2)


def test_bwrap_makes_the_root_read_only_after_the_last_mount() -> None:
    args = arguments(make_spec(binds=[Bind(Path("/c"), "/cache", writable=True)]))
    mount_options = {"--bind", "--ro-bind", "--tmpfs", "--proc", "--dev", "--symlink"}
    last_mount = max(i for i, arg in enumerate(args) if arg in mount_options)
    assert args.index("--remount-ro") > last_mount
    assert pairs(args, "--remount-ro", 1) == [("/",)]


def test_bwrap_environment_is_cleared_then_exactly_the_given_variables() -> None:
    spec = make_spec(env={"A": "1", "EMPTY": "", "SPACED": "x y"}, cwd="/app/web")
    args = arguments(spec)
    clear = args.index("--clearenv")
    assert all(i > clear for i, arg in enumerate(args) if arg == "--setenv")
    assert pairs(args, "--setenv", 2) == [("A", "1"), ("EMPTY", ""), ("SPACED", "x y")]
    assert pairs(args, "--chdir", 1) == [("/app/web",)]


def test_privileges_are_dropped_by_setpriv_before_the_command() -> None:
    command = privilege_drop_command(10001, ["bash", "-c", "echo hi"])
    assert command[0] == "/usr/bin/setpriv"
    assert {"--reuid=10001", "--regid=10001", "--clear-groups", "--no-new-privs"} <= set(command)
    assert {"--bounding-set=-all", "--inh-caps=-all"} <= set(command)
    assert command[-4:] == ["--", "bash", "-c", "echo hi"]


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"uid": 0}, "never root"),
        ({"uid": -5}, "unprivileged uid"),
        ({"hostname": "web 1"}, "not a valid host name"),
        ({"hostname": "x" * 65}, "not a valid host name"),
        ({"argv": []}, "argv must be non-empty"),
        ({"argv": ["a\0b"]}, "no NUL"),
        ({"env": {"A=B": "c"}}, "'A=B' has an invalid name"),
        ({"env": {"A": "nul\0"}}, "'A' has an invalid name/value"),
        ({"cwd": "app"}, "cwd 'app' must be an absolute path"),
        ({"binds": [Bind(Path("/x"), "cache")]}, "must be a normalized absolute path"),
        ({"binds": [Bind(Path("/x"), "/opt/../etc")]}, "must be a normalized absolute path"),
        ({"binds": [Bind(Path("/x"), "/app")]}, "reserved for the app directory"),
        ({"binds": [Bind(Path("/x"), "/usr/local/bin/uv")]}, "lies inside /usr"),
        ({"binds": [Bind(Path("/x"), "/etc")]}, "lies inside /etc"),
        ({"binds": [Bind(Path("/x"), "/proc/1")]}, "lies inside /proc"),
    ],
)
def test_spec_refuses_what_the_sandbox_must_not_do(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(SandboxSpecError, match=re.escape(complaint)):
        make_spec(**changes)


def test_host_root_recreates_merged_usr_symlinks() -> None:
    root = HostRoot.detect()
    assert "/usr" in root.read_only_dirs
    assert "/etc" in root.read_only_dirs
    for path in ("/bin", "/lib"):
        if os.path.islink(path):
            assert (os.readlink(path), path) in root.symlinks
        else:
            assert path in root.read_only_dirs


def test_status_file_gives_child_pid_then_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert BwrapStatus.read(path) == BwrapStatus()
    path.write_text('{ "child-pid": 42, "pid-namespace": 4026532178 }\n')
    assert BwrapStatus.read(path) == BwrapStatus(child_pid=42, pid_namespace=4026532178)
    path.write_text(path.read_text() + '{ "exit-code": 3 }\n')
    assert BwrapStatus.read(path).exit_code == 3


def test_status_file_with_a_torn_last_document_keeps_what_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text('{ "child-pid": 42, "pid-namespace": 7 }\n{ "exit-co')
    assert BwrapStatus.read(path) == BwrapStatus(child_pid=42, pid_namespace=7)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, 0),
        (3, 3),
        (127, 127),
        (128, 128),
        (137, -signal.SIGKILL),
        (143, -signal.SIGTERM),
        (255, 255),
    ],
)
def test_shell_style_codes_map_to_killed_by_signal(code: int, status: int) -> None:
    assert status_from_shell_code(code) == status


def test_pick_driver_refuses_to_run_unisolated_unless_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sandbox, "isolation_problems", lambda: [_sandbox.BWRAP_INSTALL_HINT])
    logged: list[str] = []
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        pick_driver(allow_unisolated=False, log=logged.append)
    assert logged == []


def test_pick_driver_warns_loudly_when_it_falls_back_to_plain_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        _sandbox, "isolation_problems", lambda: ["the agent is not running as root"]
    )
    logged: list[str] = []
    driver = pick_driver(allow_unisolated=True, log=logged.append)
    assert isinstance(driver, PlainDriver)
    assert driver.isolated is False
    assert len(logged) == 1
    assert "WITHOUT ISOLATION" in logged[0]
    assert "not running as root" in logged[0]
    assert driver.warning == logged[0]


def test_pick_driver_prefers_bubblewrap_even_when_unisolated_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sandbox, "isolation_problems", list)
    monkeypatch.setattr(_sandbox, "_bwrap_path", lambda: "/usr/bin/bwrap")
    logged: list[str] = []
    driver = pick_driver(allow_unisolated=True, log=logged.append)
    assert isinstance(driver, BubblewrapDriver)
    assert driver.isolated is True
    assert logged == []
