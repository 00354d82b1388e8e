"""A dyno's life through the real pipeline: deploy, scale, restart, stop, as a Heroku user sees it.

One `waka up` with short grace and boot timeouts serves the module; each test uses its own app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, running_waka, wait_for

pytestmark = pytest.mark.root

STOP_GRACE = 2
BOOT_TIMEOUT = 3


@pytest.fixture(scope="module")
def waka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_waka(
        tmp_path_factory.mktemp("lifecycle") / "data",
        "--stop-grace",
        str(STOP_GRACE),
        "--boot-timeout",
        str(BOOT_TIMEOUT),
    ) as daemon:
        yield daemon


def deploy(waka: Daemon, tmp_path: Path, name: str, procfile: str, scale: str) -> None:
    app = tmp_path / name
    app.mkdir()
    (app / "Procfile").write_text(procfile)
    waka.waka("apps:create", name, "--no-remote")
    waka.waka("deploy", "-a", name, str(app))
    waka.waka("ps:scale", scale, "-a", name)


def logs(waka: Daemon, app: str) -> str:
    return waka.waka("logs", "-a", app, "-n", "1500").stdout


def wait_for_log(waka: Daemon, app: str, text: str, count: int = 1, timeout: float = 60) -> str:
    def seen() -> str | None:
        output = logs(waka, app)
        return output if output.count(text) >= count else None

    return wait_for(seen, timeout, f"{text!r} x{count} in the logs of {app}")


def test_files_written_under_app_and_tmp_are_gone_after_a_restart(waka: Daemon, tmp_path: Path):
    deploy(
        waka,
        tmp_path,
        "scratch",
        "worker: for f in /app/scratch /tmp/scratch; do test -e $f && echo survived:$f; done;"
        " echo written > /app/scratch && echo written > /tmp/scratch && echo booted;"
        " exec sleep 1000\n",
        "worker=1",
    )
    wait_for_log(waka, "scratch", "app[worker.1]: booted")
    waka.waka("ps:restart", "worker", "-a", "scratch")
    output = wait_for_log(waka, "scratch", "app[worker.1]: booted", count=2)
    assert "app[worker.1]: survived:" not in output


def test_dyno_reaches_neither_the_agent_nor_another_apps_files(waka: Daemon, tmp_path: Path):
    deploy(
        waka,
        tmp_path,
        "owner",
        "worker: echo secret > /app/owner-secret; echo owner-ready; exec sleep 1000\n",
        "worker=1",
    )
    wait_for_log(waka, "owner", "app[worker.1]: owner-ready")
    data_dir = waka.data_dir.resolve()
    deploy(
        waka,
        tmp_path,
        "snoop",
        "worker: echo root: $(ls -A / | tr '\\n' ' ');"
        " find / -xdev -name owner-secret 2>/dev/null | sed 's/^/found: /';"
        f" test -e {data_dir} && echo data-dir-visible;"
        " cat /proc/self/status | grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):';"
        " echo snoop-done; exec sleep 1000\n",
        "worker=1",
    )
    output = wait_for_log(waka, "snoop", "app[worker.1]: snoop-done")
    root_line = next(line for line in output.splitlines() if "app[worker.1]: root: " in line)
    top_level = set(root_line.split("root: ", 1)[1].split())
    # The stack (/usr, /etc and the merged-/usr links), the slug, and per-dyno scratch: no
    # /var, /root, /home or /srv of the host, where agents, users and other apps keep data.
    assert top_level <= {
        "app", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc",
        "dev", "proc", "tmp",
    }, top_level  # fmt: skip
    assert "app[worker.1]: found: " not in output
    assert "app[worker.1]: data-dir-visible" not in output
    assert "CapEff:\t0000000000000000" in output
    assert "CapPrm:\t0000000000000000" in output
    assert "NoNewPrivs:\t1" in output


def test_memory_hog_gets_r14_then_r15_and_is_restarted(waka: Daemon, tmp_path: Path):
    # mini: a 256 MB quota. The hog grows in 32 MB steps: past 256 MB the platform warns (R14),
    # at 512 MB the kernel kills it (R15), and the dyno is restarted like any crash.
    hog = (
        "import sys, time\n"
        "held = []\n"
        "print('hog-start', flush=True)\n"
        "while True:\n"
        "    held.append(b'x' * (32 << 20))  # filled, so every page is resident\n"
        "    time.sleep(0.3 if len(held) * 32 < 320 else 1.5)\n"
    )
    app = tmp_path / "hog"
    app.mkdir()
    (app / "hog.py").write_text(hog)
    (app / "Procfile").write_text("worker: exec python3 hog.py\n")
    waka.waka("apps:create", "hog", "--no-remote")
    waka.waka("deploy", "-a", "hog", str(app))
    waka.waka("ps:scale", "worker=1:mini", "-a", "hog")
    output = wait_for_log(waka, "hog", "app[worker.1]: hog-start", count=2, timeout=120)
    assert "Error R14 (Memory quota exceeded)" in output
    assert "Process running mem=" in output
    assert "Error R15 (Memory quota vastly exceeded)" in output
    assert output.index("Error R14") < output.index("Error R15")


def test_sigterm_reaches_a_grandchild_and_sigkill_follows_after_the_grace(
    waka: Daemon, tmp_path: Path
):
    deploy(
        waka,
        tmp_path,
        "stubborn",
        'worker: sh -c \'trap "echo grandchild-got-term" TERM;'
        " echo grandchild-ready; while :; do sleep 0.2; done' & wait\n",
        "worker=1",
    )
    wait_for_log(waka, "stubborn", "app[worker.1]: grandchild-ready")
    waka.waka("ps:stop", "worker.1", "-a", "stubborn")
    output = wait_for_log(waka, "stubborn", "Error R12 (Exit timeout)")
    assert "app[worker.1]: grandchild-got-term" in output
    assert output.index("app[worker.1]: grandchild-got-term") < output.index("Error R12")
    assert f"within {STOP_GRACE} seconds of SIGTERM" in output
    # A formation dyno that was stopped has its slot filled again, as on Heroku.
    wait_for_log(waka, "stubborn", "app[worker.1]: grandchild-ready", count=2)
    waka.waka("ps:scale", "worker=0", "-a", "stubborn")


def test_web_dyno_that_never_binds_its_port_gets_r10_and_counts_as_a_crash(
    waka: Daemon, tmp_path: Path
):
    deploy(waka, tmp_path, "deaf", "web: echo not-listening; exec sleep 1000\n", "web=1")
    output = wait_for_log(waka, "deaf", "Error R10 (Boot timeout)")
    assert f"within {BOOT_TIMEOUT} seconds of launch" in output
    wait_for_log(waka, "deaf", "State changed from starting to crashed")
    # Crash restarts follow the schedule: the first one is immediate.
    wait_for_log(waka, "deaf", "app[web.1]: not-listening", count=2)
