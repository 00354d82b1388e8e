"""`waka run` with a real terminal: keystrokes, Ctrl-C, window size and the exit status."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import WAKA, Daemon

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
