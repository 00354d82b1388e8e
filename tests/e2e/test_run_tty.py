"""`waka run` with a real terminal: keystrokes, Ctrl-C, window size and the exit status; and
`waka ps:exec`, the same inside a dyno that already runs."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import psutil
import pytest
from conftest import WAKA, Daemon, wait_for

pytestmark = pytest.mark.root


class Terminal:
    """`waka run` started on a pseudo-terminal, driven like a person at a keyboard."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 101, rows: int = 33):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, marker: str, timeout: float = 30) -> str:
        """Reads until `marker` appears; returns everything read so far."""
        deadline = time.monotonic() + timeout
        while marker.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{marker!r} never appeared; the terminal shows:\n{self.seen!r}"
                )
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{marker!r} never appeared before EOF:\n{self.seen!r}")
                self.seen += chunk
        return self.seen.decode(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_interactive_bash_gets_keystrokes_ctrl_c_window_size_and_exit_status(
    shared_waka: Daemon, tmp_path: Path
):
    app = tmp_path / "shell"
    app.mkdir()
    (app / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    shared_waka.waka("apps:create", "shell", "--no-remote")
    shared_waka.waka("deploy", "-a", "shell", str(app))
    terminal = Terminal([WAKA, "run", "-a", "shell", "bash"], shared_waka.env)
    try:
        terminal.expect("up, run.")
        terminal.type("echo answer=$((6*7)) on $DYNO\r")
        terminal.expect("answer=42 on run.")
        terminal.type("stty size\r")
        terminal.expect("33 101")
        # Ctrl-C interrupts the foreground command, not the session.
        # $((...)) tells the command's output from the terminal's echo of what was typed.
        terminal.type("echo sleep''ing; sleep 300; echo not-interrupted-$((2+2))\r")
        terminal.expect("sleeping\r\n")
        started = time.monotonic()
        terminal.type("\x03")
        terminal.type("echo after-ctrl-c\r")
        terminal.expect("after-ctrl-c\r\n", timeout=20)
        assert time.monotonic() - started < 20
        assert "not-interrupted-4" not in terminal.seen.decode(errors="replace")
        terminal.type("exit 5\r")
        assert terminal.wait() == 5
    finally:
        terminal.close()


# The web process leaves a mark in its own /tmp (private to the sandbox) before it listens.
EXEC_PROCFILE = "web: echo from-the-dyno > /tmp/mark && exec python3 -m http.server $PORT\n"
# Run inside the dyno: what only the dyno's own sandbox shows.
EXEC_PROBE = (
    "cat /tmp/mark; echo dyno=$DYNO port=$PORT cwd=$(pwd) user=$(id -u) host=$(hostname);"
    " for p in /proc/[0-9]*; do"
    " if grep -q http.server $p/cmdline 2>/dev/null; then echo web-cgroup=$(cat $p/cgroup); fi;"
    " done; echo my-cgroup=$(cat /proc/self/cgroup); exit 7"
)


@pytest.fixture(scope="module")
def execed(shared_waka: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    app = tmp_path_factory.mktemp("execed")
    (app / "Procfile").write_text(EXEC_PROCFILE)
    shared_waka.waka("apps:create", "execed", "--no-remote")
    shared_waka.waka("deploy", "-a", "execed", str(app))
    shared_waka.wait_for_dyno("execed")
    return "execed"


def test_exec_runs_in_the_dynos_own_sandbox_cgroup_user_and_environment(
    shared_waka: Daemon, execed: str
):
    web = shared_waka.wait_for_dyno(execed)
    result = shared_waka.waka("ps:exec", "-a", execed, "--no-tty", EXEC_PROBE, check=False)
    assert result.returncode == 7, result.stderr
    out = result.stdout
    assert out.startswith("from-the-dyno\n"), out  # the dyno's private /tmp
    port = web["address"].rsplit(":", 1)[1]
    assert f"dyno=web.1 port={port} cwd=/app " in out, out
    assert "user=0" not in out and "host=web.1" in out, out
    lines = dict(line.split("=", 1) for line in out.splitlines() if "cgroup=" in line)
    assert lines["web-cgroup"] == lines["my-cgroup"], out  # it saw the dyno's process, and joined
    assert "Connecting to web.1 on" in result.stderr and "up, web.1" in result.stderr


def test_exec_with_a_terminal_is_an_interactive_shell(shared_waka: Daemon, execed: str):
    shared_waka.wait_for_dyno(execed)
    terminal = Terminal([WAKA, "ps:exec", "-a", execed], shared_waka.env)
    try:
        terminal.expect("up, web.1")
        terminal.type("echo in=$DYNO size=$(stty size)\r")
        terminal.expect("in=web.1 size=33 101")
        terminal.type("exit 3\r")
        assert terminal.wait() == 3
    finally:
        terminal.close()


def test_exec_command_ends_when_the_user_goes_away(shared_waka: Daemon, execed: str):
    shared_waka.wait_for_dyno(execed)
    marker = "exec-sleeper-$((40+2))"
    cli = subprocess.Popen(
        [WAKA, "ps:exec", "-a", execed, "--no-tty", f"echo {marker}; exec sleep 600"],
        env=shared_waka.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert cli.stdout is not None
        assert cli.stdout.readline().decode().strip() == "exec-sleeper-42"

        def sleepers() -> list[psutil.Process]:
            return [
                p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "600"]
            ]

        assert len(sleepers()) == 1
    finally:
        cli.kill()
        cli.wait()
    wait_for(lambda: not sleepers(), 30, "the exec'd command to end with its user")


def test_exec_refuses_a_dyno_that_is_not_there_or_not_up(shared_waka: Daemon, execed: str):
    missing = shared_waka.waka(
        "ps:exec", "-a", execed, "-d", "web.9", "--no-tty", "true", check=False
    )
    assert missing.returncode == 1
    assert "No dyno web.9 on execed" in missing.stderr, missing.stderr
    bad = shared_waka.waka("ps:exec", "-a", execed, "-d", "web", "--no-tty", "true", check=False)
    assert bad.returncode == 1 and "not a dyno name like web.1" in bad.stderr, bad.stderr
    unknown = shared_waka.waka("ps:exec", "-a", "no-such-app", "--no-tty", "true", check=False)
    assert unknown.returncode == 1 and "no-such-app" in unknown.stderr, unknown.stderr


def test_copy_brings_a_dynos_file_here_byte_for_byte(
    shared_waka: Daemon, execed: str, tmp_path: Path
):
    shared_waka.wait_for_dyno(execed)
    copied = shared_waka.waka("ps:copy", "/tmp/mark", "-a", execed, cwd=tmp_path)
    assert (tmp_path / "mark").read_text() == "from-the-dyno\n"
    assert copied.stdout.endswith("done, 14 bytes\n"), copied.stdout
    # Binary, and to a name of our choosing: the stack's own `true`, seen through the sandbox.
    shared_waka.waka("ps:copy", "/usr/bin/true", "-o", "t.bin", "-a", execed, cwd=tmp_path)
    assert (tmp_path / "t.bin").read_bytes() == Path("/usr/bin/true").read_bytes()
    again = shared_waka.waka("ps:copy", "/tmp/mark", "-a", execed, cwd=tmp_path, check=False)
    assert again.returncode == 1 and "exists; give another --output" in again.stderr
    missing = shared_waka.waka("ps:copy", "/tmp/none", "-a", execed, cwd=tmp_path, check=False)
    assert missing.returncode == 1
    assert "cannot copy /tmp/none from web.1" in missing.stderr, missing.stderr
    assert "No such file" in missing.stderr, missing.stderr
    assert not (tmp_path / "none").exists()
