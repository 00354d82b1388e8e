import random

import pytest

from waka.controller._placement import DynoRow, NodeInfo, NodeLoad, Placer, place, plan_app
from waka.v1.common_pb2 import DynoState

UP = DynoState.DYNO_STATE_UP
CRASHED = DynoState.DYNO_STATE_CRASHED


def row(id, type="web", idx=1, release=1, seq=1, node="n1"):
    return DynoRow(id=id, type=type, idx=idx, release=release, node_id=node, seq=seq, size="s")


def states(**by_id):
    return by_id.get


def test_first_release_creates_one_dyno_per_slot():
    plan = plan_app({"web": 2, "worker": 1}, {"web": "a", "worker": "b"}, 1, [], states())
    assert plan.create == [("web", 1), ("web", 2), ("worker", 1)]
    assert plan.stop == []


def test_nothing_runs_before_a_release():
    plan = plan_app({"web": 1}, {"web": "a"}, 0, [row("x")], states())
    assert plan.create == []
    assert plan.stop == ["x"]


def test_new_release_keeps_old_dyno_until_new_one_is_up():
    rows = [row("old", release=1, seq=1), row("new", release=2, seq=2)]
    waiting = plan_app({"web": 1}, {"web": "a"}, 2, rows, states(old=UP))
    assert waiting.create == [] and waiting.stop == []
    ready = plan_app({"web": 1}, {"web": "a"}, 2, rows, states(old=UP, new=UP))
    assert ready.stop == ["old"]


def test_new_release_that_crashes_at_boot_never_takes_the_old_one_down():
    rows = [row("old", release=1, seq=1), row("new", release=2, seq=2)]
    plan = plan_app({"web": 1}, {"web": "a"}, 2, rows, states(old=UP, new=CRASHED))
    assert plan.stop == []
    assert plan.create == []


def test_missing_slot_on_new_release_is_created_while_old_keeps_running():
    plan = plan_app({"web": 1}, {"web": "a"}, 2, [row("old", release=1)], states(old=UP))
    assert plan.create == [("web", 1)]
    assert plan.stop == []


def test_scaling_down_stops_the_highest_slots():
    rows = [row("a", idx=1), row("b", idx=2), row("c", idx=3)]
    plan = plan_app({"web": 1}, {"web": "x"}, 1, rows, states(a=UP, b=UP, c=UP))
    assert sorted(plan.stop) == ["b", "c"]


def test_process_type_gone_from_the_release_is_stopped():
    rows = [row("w", type="worker")]
    plan = plan_app({"worker": 1, "web": 1}, {"web": "x"}, 2, rows, states(w=UP))
    assert plan.stop == ["w"]
    assert plan.create == [("web", 1)]


def test_restart_replacement_is_the_newest_in_its_slot():
    rows = [row("first", seq=1), row("second", seq=5)]
    plan = plan_app({"web": 1}, {"web": "x"}, 1, rows, states(first=UP, second=UP))
    assert plan.stop == ["first"]


def load(node, committed=0, capacity=1000, same=0, slug=False, schedulable=True):
    return NodeLoad(node, node, capacity, committed, same, slug, schedulable)


def test_placement_spreads_the_same_app_and_type_first():
    chosen = place([load("a", committed=0, same=1), load("b", committed=900, same=0)], 10)
    assert chosen.node_id == "b"


def test_placement_then_prefers_least_committed_memory_fraction():
    chosen = place(
        [load("a", committed=500, capacity=1000), load("b", committed=500, capacity=4000)], 100
    )
    assert chosen.node_id == "b"


def test_placement_prefers_a_node_that_has_the_slug_when_otherwise_equal():
    chosen = place([load("a"), load("b", slug=True)], 100)
    assert chosen.node_id == "b"


def test_placement_without_room_says_why():
    chosen = place([load("a", committed=3900, capacity=1000)], 512, overcommit=4.0)
    assert chosen.node_id is None
    assert "512 MB" in chosen.reason


def test_placement_with_no_nodes_says_so():
    assert place([], 1).reason == "no node is connected"
    assert "cordoned" in place([load("a", schedulable=False)], 1).reason


def test_without_preboot_the_old_dyno_stops_before_the_new_one_is_created():
    rows = [row("old", release=1)]
    first = plan_app({"web": 1}, {"web": "a"}, 2, rows, states(old=UP), preboot=False)
    assert first.stop == ["old"] and first.create == []
    # Marked to stop but still running: the slot waits.
    waiting = plan_app(
        {"web": 1}, {"web": "a"}, 2, [], states(), preboot=False, stopping={("web", 1)}
    )
    assert waiting.create == []
    gone = plan_app({"web": 1}, {"web": "a"}, 2, [], states(), preboot=False)
    assert gone.create == [("web", 1)]


def test_without_preboot_a_running_current_dyno_is_kept():
    rows = [row("new", release=2, seq=2)]
    plan = plan_app({"web": 1}, {"web": "a"}, 2, rows, states(new=UP), preboot=False)
    assert plan.stop == [] and plan.create == []


# ------------------------------------------------------------ Placer: place() for many dynos


def naive(nodes, same_group, requests, overcommit=4.0):
    """place() as the reconciler used to call it: a NodeLoad per node for every dyno."""
    committed = {n.node_id: n.committed_mb for n in nodes}
    groups = dict(same_group)
    out = []
    for group, need in requests:
        loads = [
            NodeLoad(
                n.node_id,
                n.name,
                n.capacity_mb,
                committed[n.node_id],
                groups.get((n.node_id, group), 0),
                n.has_slug,
                n.schedulable,
            )
            for n in nodes
        ]
        chosen = place(loads, need, overcommit=overcommit)
        if chosen.node_id is not None:
            committed[chosen.node_id] += need
            key = (chosen.node_id, group)
            groups[key] = groups.get(key, 0) + 1
        out.append(chosen)
    return out


def with_placer(nodes, same_group, requests, overcommit=4.0):
    placer = Placer(nodes, same_group, overcommit=overcommit)
    return [placer.place(group, need) for group, need in requests]


def info(node, committed=0, capacity=1000, slug=False, schedulable=True, name=None):
    return NodeInfo(node, name or node, capacity, committed, slug, schedulable)


PLACER_CASES = {
    "spreads one group over every node, then round again": (
        [info("a"), info("b"), info("c")],
        {},
        [("worker", 100)] * 7,
    ),
    "two process types of one app spread each on their own": (
        [info("a"), info("b", committed=300), info("c", committed=100)],
        {},
        [("web", 100), ("worker", 100), ("web", 100), ("worker", 100), ("web", 100)],
    ),
    "dynos already placed count for spreading": (
        [info("a"), info("b"), info("c")],
        {("a", "web"): 2, ("b", "web"): 1, ("a", "worker"): 5},
        [("web", 100)] * 4 + [("worker", 100)] * 2,
    ),
    "least committed fraction of capacity, big nodes first": (
        [info("a", committed=500, capacity=1000), info("b", committed=500, capacity=4000)],
        {},
        [("w", 512)] * 6,
    ),
    "sizes differ within a pass (the fraction counts the dyno being placed)": (
        [info("small", committed=0, capacity=1000), info("big", committed=900, capacity=8000)],
        {},
        [("w", 512), ("x", 4096), ("w", 1024), ("x", 512), ("w", 4096), ("y", 128)],
    ),
    "a node with the slug wins a tie": (
        [info("a"), info("b", slug=True), info("c")],
        {},
        [("w", 100)] * 4,
    ),
    "cordoned, draining and down nodes are never chosen": (
        [info("a", schedulable=False), info("b"), info("c", schedulable=False), info("d")],
        {},
        [("w", 100)] * 5,
    ),
    "memory runs out node by node, then the reason is given": (
        [info("a", committed=3000, capacity=1000), info("b", committed=2500, capacity=1000)],
        {},
        [("w", 512)] * 5,
    ),
    "a node too full for a big dyno still takes small ones": (
        [info("a", committed=3500, capacity=1000), info("b", committed=2000, capacity=1000)],
        {},
        [("w", 1024), ("w", 256), ("w", 1024), ("w", 256), ("w", 1024), ("w", 256)],
    ),
    "equal keys keep the nodes' order (as min() does)": (
        [info("n1", name="same"), info("n2", name="same"), info("n3", name="same")],
        {},
        [("w", 100)] * 5,
    ),
    "every node cordoned": ([info("a", schedulable=False)], {}, [("w", 1)] * 2),
    "no node at all": ([], {}, [("w", 1)]),
    "capacity zero is treated as one MB, as place() does": (
        [info("a", capacity=0), info("b", capacity=1)],
        {},
        [("w", 1)] * 3,
    ),
}


@pytest.mark.parametrize("case", sorted(PLACER_CASES))
def test_placer_chooses_exactly_what_place_chooses(case):
    nodes, groups, requests = PLACER_CASES[case]
    assert with_placer(nodes, groups, requests) == naive(nodes, groups, requests)


@pytest.mark.parametrize("seed", range(40))
def test_placer_matches_place_on_random_fleets(seed):
    rng = random.Random(seed)
    nodes = [
        info(
            f"n{i}",
            committed=rng.choice([0, 0, 256, 512, 3000, 7000]),
            capacity=rng.choice([0, 512, 1000, 2048, 8192]),
            slug=rng.random() < 0.3,
            schedulable=rng.random() < 0.8,
            name=rng.choice(["a", "b", "c", f"n{i}"]),
        )
        for i in range(rng.randint(1, 12))
    ]
    groups = {
        (n.node_id, rng.choice(["web", "worker"])): rng.randint(0, 3)
        for n in nodes
        if rng.random() < 0.5
    }
    requests = [
        (rng.choice(["web", "worker", "clock"]), rng.choice([256, 512, 1024, 2048]))
        for _ in range(rng.randint(1, 60))
    ]
    overcommit = rng.choice([1.0, 4.0])
    assert with_placer(nodes, groups, requests, overcommit) == naive(
        nodes, groups, requests, overcommit
    )


def test_placer_spreads_an_apps_dynos_of_one_type_over_a_fleet():
    nodes = [info(f"sim-{i:03d}", capacity=65536) for i in range(200)]
    chosen = [p.node_id for p in with_placer(nodes, {}, [("worker", 512)] * 400)]
    assert sorted(chosen[:200]) == [n.node_id for n in nodes]
    assert {chosen.count(n.node_id) for n in nodes} == {2}
