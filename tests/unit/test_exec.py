"""The controller's side of `waka ps:exec`: which dyno, which node, and what it says when it
cannot (a real Fleet and AttachHub; the dyno listing and the log hub are stand-ins)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio

from waka.controller._attach import AttachHub
from waka.controller._errors import Conflict, InvalidInput, NotFound
from waka.controller._exec import Execs
from waka.controller._fleet import Fleet
from waka.v1.agent_pb2 import DynoStatus, Inventory, NodeStatus
from waka.v1.common_pb2 import DynoState
from waka.v1.platform_pb2 import Dyno, RunSpec

UP = DynoState.DYNO_STATE_UP
CRASHED = DynoState.DYNO_STATE_CRASHED


@dataclass
class Listing:
    dynos: list[Dyno]

    async def dynos_of(self, app: str) -> list[Dyno]:
        return [d for d in self.dynos if d.app == app]


@dataclass
class Hub:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def emit(self, app: str, text: str) -> None:
        self.lines.append((app, text))


def setup(*dynos: Dyno, connected: bool = True) -> tuple[Execs, Fleet, AttachHub, Hub]:
    fleet = Fleet(clock=lambda: 100.0)
    if connected:
        session = fleet.attach("node-a", "alpha", Inventory())
        fleet.update_status(
            session, NodeStatus(dynos=[DynoStatus(id=d.id, state=d.state) for d in dynos])
        )
    listing = Listing(list(dynos))
    formation = type("Formation", (), {"dynos": staticmethod(listing.dynos_of)})()
    attach, hub = AttachHub(), Hub()
    return Execs(formation, fleet, attach, hub), fleet, attach, hub  # type: ignore[arg-type]


def web(index: int, state: int = UP) -> Dyno:
    return Dyno(id=f"d{index}", app="demo", name=f"web.{index}", type="web", state=state)


def start(execs: Execs, **spec: object):
    return trio.run(execs.start, RunSpec(app="demo", **spec), "admin")


def test_exec_sends_the_job_to_the_dynos_node_and_says_so_in_the_logs():
    execs, fleet, attach, hub = setup(web(1), web(2))

    async def main() -> None:
        execution = await execs.start(
            RunSpec(app="demo", dyno="web.2", command="ls", tty=True, cols=80, rows=24), "admin"
        )
        assert execution.dyno.id == "d2"
        session = fleet.session("node-a")
        assert session is not None
        message = await session.next_message()
        assert message is not None
        job = message.exec
        assert (job.exec_id, job.dyno_id, job.command, job.tty) == (
            execution.exec_id,
            "d2",
            "ls",
            True,
        )
        assert (job.window.cols, job.window.rows) == (80, 24)
        # Only the dyno's node may dial in for it.
        assert attach.join(execution.exec_id, "node-b") is None
        assert attach.join(execution.exec_id, "node-a") is execution.rendezvous

    trio.run(main)
    assert hub.lines == [("demo", "Starting exec session `ls` in web.2 by admin")]


def test_exec_defaults_to_a_shell_in_web_1():
    execs, _, _, hub = setup(web(1))
    execution = start(execs)
    assert execution.dyno.name == "web.1"
    assert hub.lines == [("demo", "Starting exec session `bash` in web.1 by admin")]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({"dyno": "web"}, InvalidInput, "'web' is not a dyno name like web.1"),
        ({"dyno": "web.x"}, InvalidInput, "'web.x' is not a dyno name"),
        ({"dyno": "web.7"}, NotFound, "No dyno web.7 on demo."),
        ({"dyno": "web.3"}, Conflict, "Dyno web.3 of demo is not up (it is crashed)"),
    ],
)
def test_exec_refuses_what_it_cannot_reach_by_name(spec, error, message):
    execs, *_ = setup(web(1), web(3, CRASHED))
    with pytest.raises(error) as raised:
        start(execs, **spec)
    assert message in str(raised.value)


def test_exec_refuses_a_dyno_whose_node_is_not_connected():
    execs, *_ = setup(web(1), connected=False)
    with pytest.raises(Conflict, match="not connected"):
        start(execs)


def test_watch_tells_the_user_when_the_node_leaves_before_the_exit():
    execs, _, attach, _ = setup(web(1))

    async def main() -> None:
        execution = await execs.start(RunSpec(app="demo"), "admin")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execs.watch, execution)
            attach.join(execution.exec_id, "node-a")
            execution.rendezvous.agent_left.set()
            frame = await execution.rendezvous.next_for_user()
            assert frame is not None
            assert frame.error == "the node of web.1 went away before it ended"

    trio.run(main)
