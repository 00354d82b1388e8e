"""A node boots a limited number of dynos at once (`--max-starting`): the rest wait their turn."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, running_waka, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def waka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_waka(tmp_path_factory.mktemp("slots") / "data", "--max-starting", "1") as daemon:
        yield daemon


def test_with_one_start_slot_web_dynos_boot_one_after_another(waka: Daemon, tmp_path: Path):
    app = tmp_path / "slow"
    app.mkdir()
    # Each web dyno takes a moment to bind, so that boots would overlap without the limit.
    (app / "Procfile").write_text("web: sleep 0.5; exec python3 -m http.server $PORT\n")
    waka.waka("apps:create", "slow", "--no-remote")
    waka.waka("deploy", "-a", "slow", str(app))
    waka.waka("ps:scale", "web=3", "-a", "slow")

    def all_up() -> list[dict] | None:
        dynos = waka.json("ps", "-a", "slow")
        return dynos if len(dynos) == 3 and all(d["state"] == "up" for d in dynos) else None

    wait_for(all_up, 90, "three web dynos up")
    lines = waka.waka("logs", "-a", "slow", "-s", "waka", "-n", "500").stdout.splitlines()
    booting: set[str] = set()
    most = 0
    for line in lines:
        match = re.search(r"waka\[(web\.\d+)\]: (.*)", line)
        if match is None:
            continue
        dyno, text = match.groups()
        if text.startswith("Starting process with command"):
            booting.add(dyno)
        elif text == "State changed from starting to up":
            booting.discard(dyno)
        most = max(most, len(booting))
    assert most == 1, "\n".join(lines)
    assert sum("to up" in line for line in lines) == 3, "\n".join(lines)
