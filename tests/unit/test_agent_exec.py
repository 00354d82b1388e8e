"""The agent's end of `waka ps:exec` when the command cannot start: the user is told why on the
Attach stream, with or without a terminal, and nothing fails on the agent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from waka.agent._exec import run_exec
from waka.v1.agent_pb2 import AttachFrame, ExecJob
from waka.v1.common_pb2 import WindowSize


class RecordedCall:
    """An Attach call that takes every frame the agent sends, and answers nothing."""

    def __init__(self, requests) -> None:
        self._requests = requests
        self.frames: list[AttachFrame] = []

    def __iter__(self):
        return self

    def __next__(self):
        self.frames.extend(self._requests)  # until the agent closes its side
        raise StopIteration


@pytest.mark.parametrize("tty", [False, True])
def test_exec_in_a_dyno_not_on_this_node_says_so_on_the_stream(tty: bool):
    calls: list[RecordedCall] = []

    def attach(requests, metadata):
        calls.append(RecordedCall(requests))
        return calls[-1]

    controller = SimpleNamespace(stub=SimpleNamespace(Attach=attach), metadata=())
    job = ExecJob(exec_id="x1", dyno_id="gone", command="true", tty=tty, window=WindowSize())

    async def main() -> None:
        with trio.fail_after(10):
            await run_exec(job, None, controller)  # type: ignore[arg-type]

    trio.run(main)
    (call,) = calls
    assert [f.WhichOneof("frame") for f in call.frames] == ["dyno_id", "error"]
    assert call.frames[0].dyno_id == "x1"
    assert call.frames[1].error == "cannot exec in the dyno: the dyno is not on this node any more"
