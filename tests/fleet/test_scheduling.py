"""Where dynos go: spread over the nodes, onto a node that joins later, never onto a cordoned one,
and off a drained one without a moment with fewer dynos up than the formation asks for."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from conftest import wait_for

from fleet.conftest import MONITOR_PASS, Cluster, Sampler

pytestmark = pytest.mark.root


def per_node(cluster: Cluster, app: str) -> Counter[str]:
    return Counter(d.node for d in cluster.dynos(app) if d.state == "up")


def test_workers_spread_two_and_two_and_a_node_that_joins_later_gets_the_new_ones(
    cluster: Cluster,
):
    first, second = cluster.add_agent(), cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=4)
    cluster.wait_converged("tick", "worker", 4)
    assert per_node(cluster, "tick") == {first.name: 2, second.name: 2}

    late = cluster.add_agent()
    cluster.scale("tick", worker=6)
    cluster.wait_converged("tick", "worker", 6)
    assert per_node(cluster, "tick") == {first.name: 2, second.name: 2, late.name: 2}
    assert {d.name for d in cluster.dynos("tick") if d.node == late.name} == {
        "worker.5",
        "worker.6",
    }


def test_a_node_shown_ready_takes_new_dynos_at_once(cluster: Cluster):
    first, second = cluster.add_agent(), cluster.add_agent()
    cluster.create_ticker_app("tick")
    cluster.scale("tick", worker=4)
    cluster.wait_converged("tick", "worker", 4)
    late = cluster.add_agent(wait=False)
    # Joined but not connected yet (a slow start, as on a loaded host): the monitor sees the
    # node `down` on its next pass, and only its pass after the connection makes it `ready`.
    wait_for(lambda: (late.data_dir / "node.json").exists(), 60, "the join", interval=0.005)
    late.freeze()
    frozen_at = time.monotonic()
    wait_for(lambda: time.monotonic() > frozen_at + MONITOR_PASS, 5, "a monitor pass")
    late.thaw()
    cluster.wait_node(late.name, "ready", interval=0.01)
    assert cluster.api is not None
    cluster.api.scale("tick", worker=6)
    cluster.wait_converged("tick", "worker", 6)
    assert per_node(cluster, "tick") == {first.name: 2, second.name: 2, late.name: 2}


def test_cordon_keeps_new_dynos_off_and_drain_replaces_each_dyno_before_stopping_it(
    cluster: Cluster,
):
    first, second = cluster.add_agent(), cluster.add_agent()
    cluster.create_ticker_app("tick", web=True)
    cluster.scale("tick", web=2)
    cluster.wait_converged("tick", "web", 2)
    assert per_node(cluster, "tick") == {first.name: 1, second.name: 1}

    cluster.waka("nodes:cordon", first.name)
    assert cluster.nodes()[first.name].state == "cordoned"
    cluster.scale("tick", web=4)
    cluster.wait_converged("tick", "web", 4)
    assert per_node(cluster, "tick") == {first.name: 1, second.name: 3}, "placed on a cordoned node"

    cluster.waka("nodes:uncordon", first.name)
    assert cluster.nodes()[first.name].state == "ready"
    # Draining the busier node: its three dynos move to the other one, one replacement each.
    sampler = Sampler(lambda: cluster.up_slots("tick", "web"), interval=0.1)
    try:
        cluster.waka("nodes:drain", second.name)
        assert cluster.nodes()[second.name].state == "draining"

        def moved() -> bool:
            return per_node(cluster, "tick") == {first.name: 4} and not second.dyno_processes()

        wait_for(moved, 90, f"every dyno to move off {second.name}", interval=0.2)
    finally:
        samples = sampler.close()
    assert samples, f"no sample of `waka ps` could be taken: {sampler.errors[:3]}"
    short = [(round(t - samples[0][0], 1), sorted(up)) for t, up in samples if len(up) < 4]
    print(f"drain: {len(samples)} samples of `waka ps`, {len(short)} with fewer than 4 up")
    assert not short, f"fewer than 4 dynos were up during the drain: {short[:5]}"
    cluster.wait_converged("tick", "web", 4)
    assert cluster.nodes()[second.name].dynos == 0

    cluster.waka("nodes:uncordon", second.name)
    assert cluster.nodes()[second.name].state == "ready"
    cluster.scale("tick", web=6)
    cluster.wait_converged("tick", "web", 6)
    assert per_node(cluster, "tick") == {first.name: 4, second.name: 2}
