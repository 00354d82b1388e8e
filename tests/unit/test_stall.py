"""The agent's stall watch: a blocked loop is said once, with where it is stuck, and its end."""

from __future__ import annotations

import threading

import trio
from conftest import wait_for

from waka.agent._stall import StallWatch


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch(clock: FakeClock, said: list[str]) -> StallWatch:
    return StallWatch(threshold=3.0, log=said.append, clock=clock, stack_of=lambda _: "  here")


def advance(stall: StallWatch, clock: FakeClock, seconds: float, *, beating: bool) -> None:
    """Time passes as the watcher sees it: a look every half second."""
    for _ in range(round(seconds / 0.5)):
        clock.now += 0.5
        if beating:
            stall.beat()
        stall.check()


def test_a_loop_that_beats_is_never_reported():
    clock, said = FakeClock(), []
    stall = watch(clock, said)
    advance(stall, clock, 10, beating=True)
    assert said == []


def test_a_stall_is_said_once_past_the_threshold_with_the_stack_then_its_end():
    clock, said = FakeClock(), []
    stall = watch(clock, said)
    advance(stall, clock, 2.5, beating=False)
    assert said == [], "below the threshold is not a stall"
    advance(stall, clock, 5.0, beating=False)
    assert len(said) == 1, said
    assert "blocked for 3.0s" in said[0] and said[0].endswith("in:\n  here")
    advance(stall, clock, 0.5, beating=True)
    assert said[1] == "the agent's event loop turns again after 8.0s"
    advance(stall, clock, 10, beating=True)
    assert len(said) == 2


def test_a_stopped_process_is_not_a_blocked_loop():
    """SIGSTOP stops the watcher too: on waking it sees a long gap since its own last look,
    and judges the loop only from then on."""
    clock, said = FakeClock(), []
    stall = watch(clock, said)
    advance(stall, clock, 1.0, beating=True)
    clock.now += 20  # stopped: no beats, no looks
    stall.check()
    advance(stall, clock, 1.0, beating=True)
    assert said == []
    # Stopped, then the loop does stay blocked after the process resumes: counted from the resume.
    clock.now += 20
    stall.check()
    advance(stall, clock, 3.0, beating=False)
    assert len(said) == 1 and "blocked for 3.0s" in said[0], said


def test_a_real_blocking_call_on_the_loop_is_reported_with_its_frame():
    said: list[str] = []
    turned = threading.Event()

    def log(message: str) -> None:
        said.append(message)
        if len(said) == 2:
            turned.set()

    def block_the_loop() -> None:
        wait_for(lambda: said, 10, "the stall to be reported")

    async def main() -> None:
        stall = StallWatch(threshold=0.3, log=log)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall.run)
            await trio.sleep(0.1)
            block_the_loop()  # a blocking call where an await belongs
            assert await trio.to_thread.run_sync(turned.wait, 10), "the end was never said"
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert "block_the_loop" in said[0], said[0]
    assert said[1].startswith("the agent's event loop turns again after"), said
