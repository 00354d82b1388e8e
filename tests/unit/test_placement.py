from waka.controller._placement import DynoRow, NodeLoad, place, plan_app
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
