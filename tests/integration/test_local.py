"""`waka local` and `local:run`: a Procfile's processes on this machine with the app's .env, as
`heroku local` runs them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import WAKA

PROCFILE = (
    "web: echo web port=$PORT color=$COLOR; sleep 0.2\n"
    "worker: echo worker port=$PORT; exec sleep 60\n"
    "release: echo migrating\n"
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / ".env").write_text('COLOR="deep red"\n# a comment\n')
    return tmp_path


def waka(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WAKA, *args], cwd=app, capture_output=True, text=True, timeout=60, check=False
    )


def lines_of(output: str, name: str) -> list[str]:
    """What one process printed, without honcho's `HH:MM:SS name |` prefix."""
    pattern = re.compile(rf"^\d\d:\d\d:\d\d {re.escape(name)} +\| (.*)$")
    return [m[1] for line in output.splitlines() if (m := pattern.match(line))]


def test_local_runs_every_type_but_release_with_env_and_ports_until_one_exits(app: Path):
    result = waka(app, "local")
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "web.1") == ["web port=5000 color=deep red"]
    assert lines_of(result.stdout, "worker.1") == ["worker port=5100"]
    assert "migrating" not in result.stdout
    # The web process ended, so the worker was stopped, not left running.
    assert "sending SIGTERM to worker.1" in result.stdout


def test_local_runs_the_types_and_counts_asked_for(app: Path):
    result = waka(app, "local", "release,web=2", "-p", "6000")
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "release.1") == ["migrating"]
    web = lines_of(result.stdout, "web.1") + lines_of(result.stdout, "web.2")
    assert sorted(web) == ["web port=6100 color=deep red", "web port=6101 color=deep red"]
    assert not lines_of(result.stdout, "worker.1")


def test_local_exits_with_the_status_of_the_process_that_ended_first(app: Path):
    (app / "Procfile").write_text("web: exit 3\nworker: exec sleep 60\n")
    assert waka(app, "local").returncode == 3


def test_local_run_runs_one_command_with_the_env(app: Path):
    result = waka(app, "local:run", "echo $COLOR; exit 4")
    assert result.returncode == 4
    assert result.stdout == "deep red\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("local", "nope"), "has no process type 'nope' (it has web, worker, release)"),
        (("local", "web=0"), "invalid count in 'web=0'"),
        (("local", "-f", "Missing"), "no Procfile at"),
        (("local", "-e", "bad.env"), "bad.env line 1"),
    ],
)
def test_local_names_what_is_wrong(app: Path, args: tuple[str, ...], message: str):
    (app / "bad.env").write_text("not a variable line\n")
    result = waka(app, *args)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert result.stdout == ""
