"""The log stream on a real `waka up`: history on disk, exactly once across a crash, drains."""

from __future__ import annotations

import re
import signal
import socket
import threading
from pathlib import Path

import pytest
from conftest import Daemon, start_up, stop_and_check_clean, wait_for

pytestmark = pytest.mark.root

COUNTER = "worker: i=0; while true; i=$((i+1)); do echo n=$i; sleep 0.005; done\n"


def numbers(daemon: Daemon, app: str) -> list[int]:
    logs = daemon.waka(
        "logs", "-a", app, "-d", "worker.1", "-s", "app", "--since", "1h", "-n", "100000"
    ).stdout
    return [int(n) for n in re.findall(r"app\[worker\.1\]: n=(\d+)$", logs, re.MULTILINE)]


def test_every_line_arrives_exactly_once_across_a_controller_crash(tmp_path: Path):
    daemon = start_up(tmp_path / "data")
    try:
        app = tmp_path / "counter"
        app.mkdir()
        (app / "Procfile").write_text(COUNTER)
        daemon.waka("apps:create", "counter", "--no-remote")
        daemon.waka("deploy", "-a", "counter", str(app))
        daemon.waka("ps:scale", "worker=1", "-a", "counter")
        wait_for(lambda: len(numbers(daemon, "counter")) > 200, 60, "200 numbered lines")
        # The controller (and the agent, same process) die at once; the dyno does not.
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(30)
        daemon = start_up(tmp_path / "data")

        def caught_up() -> bool:
            seen = numbers(daemon, "counter")
            return len(seen) > 1000

        wait_for(caught_up, 90, "lines after the restart")
        seen = numbers(daemon, "counter")
        assert seen[0] == 1, seen[:5]
        duplicates = len(seen) - len(set(seen))
        missing = sorted(set(range(1, max(seen) + 1)) - set(seen))
        assert not missing, f"{len(missing)} lines lost, e.g. {missing[:10]}"
        assert not duplicates, f"{duplicates} lines arrived twice"
        assert seen == sorted(seen)
    finally:
        stop_and_check_clean(daemon)


class SyslogReceiver:
    """A TCP syslog server that reads RFC 6587 octet-counted frames."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.frames: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    self.frames.append(rest[: int(length)].decode())
                    buffer = rest[int(length) :]

    def close(self) -> None:
        self.server.close()


def test_a_syslog_drain_receives_framed_rfc5424_messages(shared_waka: Daemon, tmp_path: Path):
    receiver = SyslogReceiver()
    try:
        app = tmp_path / "drained"
        app.mkdir()
        (app / "Procfile").write_text("worker: echo drained-hello; exec sleep 1000\n")
        shared_waka.waka("apps:create", "drained", "--no-remote")
        added = shared_waka.waka(
            "drains:add", f"syslog://127.0.0.1:{receiver.port}", "-a", "drained"
        )
        token = re.search(r"\((d\.[0-9a-f-]+)\)", added.stdout)[1]
        listed = shared_waka.json("drains", "-a", "drained")
        assert [d["token"] for d in listed] == [token]
        shared_waka.waka("deploy", "-a", "drained", str(app))
        shared_waka.waka("ps:scale", "worker=1", "-a", "drained")

        def received() -> str | None:
            return next((f for f in receiver.frames if f.endswith(" drained-hello\n")), None)

        frame = wait_for(received, 60, "the app's line at the syslog receiver")
        # <PRI>1 TIMESTAMP HOSTNAME(token) APP-NAME PROCID MSGID SD MSG
        fields = frame.split(" ", 7)
        assert fields[0].startswith("<") and fields[0].endswith(">1")
        assert fields[2] == token
        assert fields[3] == "app"  # APP-NAME is the line's source, as Logplex sends it
        assert fields[4] == "worker.1"
        assert fields[7].rstrip("\n") == "drained-hello"
        shared_waka.waka("drains:remove", token, "-a", "drained")
        assert shared_waka.json("drains", "-a", "drained") == []
        bad = shared_waka.waka("drains:add", "ftp://example.home.lan", "-a", "drained", check=False)
        assert bad.returncode == 1 and "ftp" in bad.stderr
    finally:
        receiver.close()


def test_since_and_until_are_checked(shared_waka: Daemon):
    shared_waka.waka("apps:create", "timewindow", "--no-remote")
    bad = shared_waka.waka("logs", "-a", "timewindow", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and 'invalid --since "yesterday"' in bad.stderr
    both = shared_waka.waka("logs", "-a", "timewindow", "-t", "--until", "1h", check=False)
    assert both.returncode == 1 and "--until cannot be combined with --tail" in both.stderr
