"""From inside a dyno: only its own processes are visible and the stack is read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Daemon, wait_for

pytestmark = pytest.mark.root

PROBE = (
    "worker: echo probe-start; ps -e -o pid=,comm= | sed 's/^/proc: /';"
    " if touch /usr/waka-probe 2>/dev/null; then echo usr-writable; else echo usr-read-only; fi;"
    " echo uid=$(id -u); echo home=$HOME dyno=$DYNO; echo probe-end; exec sleep 1000\n"
)


def test_dyno_sees_only_its_processes_and_cannot_write_the_stack(waka_up: Daemon, tmp_path: Path):
    app = tmp_path / "probe"
    app.mkdir()
    (app / "Procfile").write_text(PROBE)
    waka_up.waka("apps:create", "probe", "--no-remote")
    waka_up.waka("deploy", "-a", "probe", str(app))
    waka_up.waka("ps:scale", "worker=1", "-a", "probe")

    def probe_output() -> str | None:
        logs = waka_up.waka("logs", "-a", "probe", "-s", "app", "-n", "500").stdout
        return logs if "probe-end" in logs else None

    logs = wait_for(probe_output, 60, "the probe's output")
    processes = [
        line.split("proc: ", 1)[1].split() for line in logs.splitlines() if "proc: " in line
    ]
    names = sorted(name for _, name in processes)
    # bwrap's pid 1, the Procfile command's shell, and the probe's ps | sed: nothing of the host.
    assert names == ["bash", "bwrap", "ps", "sed"], processes
    assert all(int(pid) < 10 for pid, _ in processes), processes
    assert "usr-read-only" in logs
    assert not Path("/usr/waka-probe").exists()
    uid_line = next(line for line in logs.splitlines() if "uid=" in line)
    assert "uid=0" not in uid_line
    assert "home=/app dyno=worker.1" in logs
