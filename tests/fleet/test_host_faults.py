"""A host is lost (its agent frozen, or its link cut) and comes back.

The controller marks it `suspect`, then starts its dynos elsewhere well within 30 s; the host's
own dynos keep running all along (an agent that cannot reach the controller stops nothing); and
when the host returns, the extra copies are stopped so exactly the desired number remains.
"""

from __future__ import annotations

import time

import pytest
from conftest import wait_for

from fleet.conftest import Agent, Cluster, Sampler

pytestmark = pytest.mark.root

# What users are promised: a lost host's dynos run elsewhere within this many seconds.
REPLACED_WITHIN = 30


def spread_four(cluster: Cluster) -> tuple[Agent, Agent]:
    lost, other = cluster.add_agent(), cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=4)
    cluster.wait_converged("tick", "worker", 4)
    assert len(lost.dyno_processes()) == 2, cluster.describe("tick")
    return lost, other


def wait_replaced_elsewhere(cluster: Cluster, lost: Agent, started: float) -> float:
    """Until every slot has an up dyno on another node; returns the seconds since `started`."""

    def replaced() -> bool:
        up = {d.name for d in cluster.dynos("tick") if d.state == "up" and d.node != lost.name}
        return len(up) == 4

    wait_for(replaced, 60, f"{lost.name}'s dynos to be up on another node", interval=0.1)
    return time.monotonic() - started


def test_frozen_host_is_suspect_then_replaced_within_30s_and_extras_stop_when_it_thaws(
    cluster: Cluster,
):
    lost, _ = spread_four(cluster)
    its_dynos = lost.dyno_processes()
    started = time.monotonic()
    lost.freeze()
    suspect_after = cluster.wait_node(lost.name, "suspect", timeout=30) - started
    replaced_after = wait_replaced_elsewhere(cluster, lost, started)
    print(f"frozen agent: suspect after {suspect_after:.1f}s, replaced after {replaced_after:.1f}s")
    assert lost.dyno_processes() == its_dynos, "a frozen agent's dynos stopped"
    assert replaced_after <= REPLACED_WITHIN

    lost.thaw()
    cluster.wait_node(lost.name, "ready", timeout=30)
    cluster.wait_converged("tick", "worker", 4)
    assert not set(its_dynos) & set(cluster.running()), "the replaced copies still run"


def test_cut_off_host_keeps_its_dynos_while_replaced_and_extras_stop_when_it_returns(
    cluster: Cluster,
):
    lost, _ = spread_four(cluster)
    its_dynos = lost.dyno_processes()
    # The host's dynos must keep running for the whole time it is cut off.
    watch = Sampler(lost.dyno_processes, interval=0.2)
    started = time.monotonic()
    lost.host.cut()
    try:
        suspect_after = cluster.wait_node(lost.name, "suspect", timeout=30) - started
        replaced_after = wait_replaced_elsewhere(cluster, lost, started)
        down_after = cluster.wait_node(lost.name, "down", timeout=30) - started
        # Cut off for longer than the controller's down time, with the replacements running.
        deadline = started + 30
        wait_for(lambda: time.monotonic() > deadline, 35, "30 s cut off")
    finally:
        lost.host.restore()
        samples = watch.close()
    print(
        f"cut link: suspect after {suspect_after:.1f}s, down after {down_after:.1f}s,"
        f" replaced after {replaced_after:.1f}s"
    )
    assert lost.process is not None and lost.process.poll() is None, (
        f"the cut-off agent exited {lost.process.returncode}:\n{lost.log()[-3000:]}"
    )
    changed = [(round(t - started, 1), sorted(s)) for t, s in samples if s != its_dynos]
    assert not changed, f"the cut-off host's dynos did not keep running: {changed[:3]}"
    assert replaced_after <= REPLACED_WITHIN

    cluster.wait_node(lost.name, "ready", timeout=40)
    cluster.wait_converged("tick", "worker", 4)
    assert not set(its_dynos) & set(cluster.running()), "the replaced copies still run"


@pytest.mark.parametrize("fault", ["cut", "silence"])
def test_with_a_fence_time_a_cut_off_host_stops_its_dynos_before_they_run_elsewhere(
    cluster: Cluster, fault: str
):
    """`cut`: the host's link goes down (its sockets fail within seconds, on failed ARP);
    `silence`: every packet is dropped on the way and nothing else happens, so only the
    agent's own timeouts can tell it that the controller is gone (its keepalive pings go
    unacknowledged: grpc's TCP_USER_TIMEOUT, 5 s, ends the connection)."""
    fenced = cluster.add_agent(options=("--fence-after", "3"))
    cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=4)
    cluster.wait_converged("tick", "worker", 4)
    its_dynos = fenced.dyno_processes()
    assert len(its_dynos) == 2, cluster.describe("tick")

    fail, repair = {
        "cut": (fenced.host.cut, fenced.host.restore),
        "silence": (fenced.host.silence, fenced.host.unsilence),
    }[fault]
    started = time.monotonic()
    fail()
    try:
        wait_for(lambda: not fenced.dyno_processes(), 90, "the fenced host to stop its dynos", 0.1)
        stopped_after = time.monotonic() - started
        replaced_after = wait_replaced_elsewhere(cluster, fenced, started)
    finally:
        repair()
    print(
        f"fence ({fault}): stopped after {stopped_after:.1f}s, replaced after {replaced_after:.1f}s"
    )
    assert "the fence time" in fenced.log(since_start=True)
    # The app never ran twice: the cut-off copies were gone before the replacements started.
    assert stopped_after < replaced_after
    assert fenced.process is not None and fenced.process.poll() is None, fenced.log()[-3000:]

    cluster.wait_node(fenced.name, "ready", timeout=40)
    cluster.wait_converged("tick", "worker", 4)
    assert not set(its_dynos) & set(cluster.running()), "a fenced dyno came back as well"
