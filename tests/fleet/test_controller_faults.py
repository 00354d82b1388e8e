"""The controller dies or comes back with old state; the dynos on the hosts do not suffer for it.

Killed in the middle of a scale, a restarted controller (same data dir) learns what every agent
runs before it acts: no dyno is stopped that should run, none is started twice, and the formation
converges. Started on an older copy of its database, it does not stop the dynos it does not know
about; it shows them, and stops them only when an operator says so (`waka nodes:adopt`).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from conftest import wait_for

from fleet.conftest import Cluster, Sampler

pytestmark = pytest.mark.root


Processes = dict[str, frozenset[int]]


def processes(cluster: Cluster) -> Processes:
    """Every dyno running on any host, with its pids."""
    return {
        dyno_id: frozenset(pids)
        for agent in cluster.agents.values()
        for dyno_id, pids in agent.dyno_processes().items()
    }


def backup_database(database: Path, copy: Path) -> None:
    """A consistent copy of a live WAL database (what `sqlite3 .backup` makes)."""
    source = sqlite3.connect(database)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def test_controller_sigkill_right_after_a_scale_stops_nothing_and_converges_to_exactly_six(
    cluster: Cluster,
):
    cluster.add_agent()
    cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=2)
    cluster.wait_converged("tick", "worker", 2)
    original = processes(cluster)
    sampler = Sampler(lambda: processes(cluster))
    try:
        cluster.scale("tick", worker=6)
        cluster.kill_server()
        down_at = time.monotonic()
        assert {k: v for k, v in processes(cluster).items() if k in original} == original, (
            "a dyno stopped when the controller died"
        )
        cluster.start_server()
        print(f"controller down for {time.monotonic() - down_at:.1f}s")
        cluster.wait_converged("tick", "worker", 6)
    finally:
        samples = sampler.close()
    final = processes(cluster)
    ever: set[str] = set()
    for _, seen in samples:
        ever |= set(seen)
        missing = {k for k in original if seen.get(k) != original[k]}
        assert not missing, f"dynos that should have kept running stopped or changed: {missing}"
        assert len(seen) <= 6, f"more than 6 dynos ran at once: {sorted(seen)}"
    assert ever == set(final), (
        f"dynos were started and stopped again (duplicates): {sorted(ever - set(final))}"
    )
    assert len(final) == 6


def test_controller_on_an_older_database_keeps_unknown_dynos_until_adopted(cluster: Cluster):
    agent = cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=2)
    cluster.wait_converged("tick", "worker", 2)
    database = cluster.server_dir / "waka.db"
    old_copy = cluster.root / "waka-old.db"
    backup_database(database, old_copy)
    known = set(processes(cluster))

    cluster.scale("tick", worker=4)
    cluster.wait_converged("tick", "worker", 4)
    everything = processes(cluster)
    unknown = set(everything) - known
    assert cluster.stop_server() == 0
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    old_copy.replace(database)
    cluster.start_server()
    cluster.wait_node(agent.name, "ready", timeout=30)

    def shows_unknown() -> bool:
        return cluster.nodes()[agent.name].unknown_dynos == len(unknown)

    wait_for(shows_unknown, 30, f"`waka nodes` to count {len(unknown)} unknown dynos", 0.2)
    # Not stopping is not an event: watch for two resync passes and heartbeats (5 s each).
    watch = Sampler(lambda: processes(cluster), interval=0.2)
    deadline = time.monotonic() + 11
    wait_for(lambda: time.monotonic() > deadline, 15, "two resync passes")
    for _, seen in watch.close():
        assert seen == everything, f"the controller stopped dynos it did not know: {seen}"
    listing = cluster.waka("nodes").stdout
    assert f"(+{len(unknown)} unknown)" in listing, listing
    assert [d.name for d in cluster.dynos("tick")] == ["worker.1", "worker.2"]

    cluster.waka("nodes:adopt", agent.name)
    wait_for(lambda: set(processes(cluster)) == known, 30, "the unknown dynos to stop", 0.2)
    wait_for(
        lambda: cluster.nodes()[agent.name].unknown_dynos == 0,
        30,
        "`waka nodes` to count no unknown dyno",
        0.2,
    )
    assert {k: v for k, v in processes(cluster).items()} == {
        k: v for k, v in everything.items() if k in known
    }, "adopting stopped or restarted a dyno the database knows"
    cluster.wait_converged("tick", "worker", 2)
