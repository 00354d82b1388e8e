"""An agent dies or is stopped; its dynos do not depend on it.

Killed (SIGKILL), the agent leaves its dynos running and the restarted agent takes them back:
same processes, no restart counted, and every line they printed meanwhile reaches the log stream.
Stopped on purpose (SIGTERM), its dynos are moved to other nodes, not reported as crashes.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from conftest import wait_for

from fleet.conftest import (
    Agent,
    Cluster,
    LogTail,
    TickReport,
    send_signal,
    tick_report,
    wait_stopped,
)

pytestmark = pytest.mark.root

ADOPTED = re.compile(r"adopted (\S+) (\S+) \(pid (\d+)\)")


def ticks_reach(tail: LogTail, dyno: str, number: int, timeout: float = 30) -> None:
    def reached() -> bool:
        numbers = [int(t.split()[1]) for t in tail.texts(dyno) if t.startswith("tick ")]
        return bool(numbers) and max(numbers) >= number

    wait_for(reached, timeout, f"tick {number} of {dyno} in the log stream", interval=0.1)


def last_tick(tail: LogTail, dyno: str) -> int:
    numbers = [int(t.split()[1]) for t in tail.texts(dyno) if t.startswith("tick ")]
    return max(numbers, default=0)


def kill_and_take_back(cluster: Cluster, agent: Agent, before: dict[str, dict[int, float]]) -> None:
    """SIGKILL the agent, check the dynos run on without it, restart it, check it adopted them."""
    agent.kill()
    cluster.wait_node(agent.name, "suspect", timeout=20)
    assert agent.dyno_processes() == before, "a dyno's processes changed while its agent was dead"
    cluster.restart_agent(agent)
    cluster.wait_node(agent.name, "ready", timeout=30)

    def adopted_all() -> bool:
        found = {m[2]: int(m[3]) for m in ADOPTED.finditer(agent.log(since_start=True))}
        return len(found) == len(before)

    wait_for(adopted_all, 30, f"{agent.name} to adopt its {len(before)} dynos")
    for match in ADOPTED.finditer(agent.log(since_start=True)):
        assert any(int(match[3]) in pids for pids in before.values()), (
            f"{agent.name} adopted {match[2]} as pid {match[3]}, which is none of the pids it had"
        )
    assert agent.dyno_processes() == before, "the restarted agent did not keep the same processes"


def report_ticks(dyno: str, report: TickReport) -> None:
    print(
        f"{dyno}: ticks {report.first}..{report.last}, {len(report.gaps)} missing"
        f" {report.gaps[:20]}, {len(report.duplicates)} duplicated {report.duplicates[:20]}"
        f" (up to {report.most_copies} copies)"
    )


def test_agent_sigkill_keeps_dyno_pids_and_the_restarted_agent_ships_every_line(
    cluster: Cluster,
):
    agent = cluster.add_agent()
    cluster.create_ticker_app("tick")
    tail = LogTail(cluster.api, "tick", source="app", dyno="worker")
    try:
        cluster.scale("tick", worker=2)
        cluster.wait_converged("tick", "worker", 2)
        ticks_reach(tail, "worker.1", 20)
        before = agent.dyno_processes()
        assert len(before) == 2

        kill_and_take_back(cluster, agent, before)

        # Everything printed while no agent ran, and after, arrives.
        target = {dyno: last_tick(tail, dyno) + 40 for dyno in ("worker.1", "worker.2")}
        for dyno, number in target.items():
            ticks_reach(tail, dyno, number)
        for dyno in target:
            report = tick_report(tail.texts(dyno))
            report_ticks(dyno, report)
            assert report.first == 1, f"{dyno}'s first lines never arrived"
            assert not report.gaps, f"{dyno}: lines lost across the agent restart: {report.gaps}"
        restarts = {d.name: d.restarts for d in cluster.dynos("tick")}
        assert restarts == {"worker.1": 0, "worker.2": 0}, "an adopted dyno counted a restart"
    finally:
        tail.close()


def test_agent_killed_ten_times_in_a_row_keeps_its_dynos_and_their_lines(cluster: Cluster):
    agent = cluster.add_agent()
    cluster.create_ticker_app("tick")
    tail = LogTail(cluster.api, "tick", source="app", dyno="worker")
    try:
        cluster.scale("tick", worker=2)
        cluster.wait_converged("tick", "worker", 2)
        ticks_reach(tail, "worker.1", 10)
        before = agent.dyno_processes()
        restarts = {d.id: d.restarts for d in cluster.dynos("tick")}
        started = time.monotonic()
        for round_number in range(1, 11):
            kill_and_take_back(cluster, agent, before)
            now = {d.id: d.restarts for d in cluster.dynos("tick")}
            assert set(now) == set(restarts), f"round {round_number}: the dynos changed: {now}"
            went_down = {k: (restarts[k], v) for k, v in now.items() if v < restarts[k]}
            assert not went_down, f"round {round_number}: restart counts went down: {went_down}"
            restarts = now
        print(f"10 kills and adoptions in {time.monotonic() - started:.1f}s")

        target = {dyno: last_tick(tail, dyno) + 40 for dyno in ("worker.1", "worker.2")}
        for dyno, number in target.items():
            ticks_reach(tail, dyno, number)
        reports = {dyno: tick_report(tail.texts(dyno)) for dyno in target}
        for dyno, report in reports.items():
            report_ticks(dyno, report)
        assert all(r.first == 1 and not r.gaps for r in reports.values()), (
            f"lines lost across ten agent restarts: { {d: r.gaps for d, r in reports.items()} }"
        )
    finally:
        tail.close()


def test_a_whole_fleet_stopped_at_once_stops_without_waiting_out_the_leave_timeout(
    cluster: Cluster,
):
    """Every agent leaving together (a homelab powering down): each would wait for its dynos to
    be replaced elsewhere, on nodes that are leaving too. The last to leave has nowhere to move
    anything, and the controller tells the ones still waiting so."""
    agents = [cluster.add_agent(), cluster.add_agent(), cluster.add_agent()]
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=6)
    cluster.wait_converged("tick", "worker", 6)
    for agent in agents:
        send_signal(agent.process, signal.SIGTERM)
    # Exit codes: 0 is a clean stop; a daemon still there after the harness's stop timeout
    # (40 s, under the 90 s leave timeout) is killed and shows -9.
    codes = {agent.name: wait_stopped(agent.process) for agent in agents}
    logs = {agent.name: agent.log(since_start=True) for agent in agents}
    assert codes == {agent.name: 0 for agent in agents}, cluster.logs_for_failure()
    assert not [name for name, text in logs.items() if "were not moved within" in text], logs
    # The controller told the nodes that left before the last one.
    assert "no node is left to take its dynos" in cluster.server_log_tail(20_000)
    for agent in agents:
        assert not agent.dyno_processes(), f"{agent.name} left dynos running"


def test_agent_sigterm_moves_its_dynos_first_without_calling_them_crashed(cluster: Cluster):
    leaving = cluster.add_agent()
    staying = cluster.add_agent()
    cluster.create_ticker_app("tick")
    events = LogTail(cluster.api, "tick", source="waka")
    try:
        cluster.scale("tick", worker=4)
        cluster.wait_converged("tick", "worker", 4)
        moved = set(leaving.dyno_processes())
        assert len(moved) == 2, cluster.describe("tick")

        started = time.monotonic()
        assert leaving.terminate() == 0, f"the agent's graceful stop failed:\n{leaving.log()}"
        stopped_after = time.monotonic() - started
        assert not leaving.dyno_processes(), "a gracefully stopped agent left dynos running"
        assert "were not moved" not in leaving.log(since_start=True), leaving.log()

        # The agent told the controller first and left only once each of its dynos had a
        # replacement up on the other node: all four are up there the moment it is gone.
        def replaced() -> bool:
            dynos = cluster.dynos("tick")
            up = [d for d in dynos if d.state == "up" and d.node == staying.name]
            return len(up) == 4 and not any(d.id in moved for d in dynos)

        wait_for(replaced, 10, "the controller to show the moved dynos up on the other node")
        print(f"graceful agent stop: dynos moved and agent exited after {stopped_after:.1f}s")
        crashed = [t for t in events.texts() if "to crashed" in t]
        assert not crashed, f"a graceful agent stop was reported as crashes: {crashed}"
        assert cluster.nodes()[leaving.name].state in {"suspect", "down"}

        # Back from maintenance, the node takes dynos again with no uncordon.
        cluster.restart_agent(leaving)
        cluster.wait_node(leaving.name, "ready", timeout=30)
        cluster.scale("tick", worker=6)
        cluster.wait_converged("tick", "worker", 6)
        assert leaving.dyno_processes(), cluster.describe("tick")
    finally:
        events.close()
