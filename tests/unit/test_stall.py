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


def test_a_loop_that_beats_is_never_reported():
    clock, said = FakeClock(), []
    stall = watch(clock, said)
    for _ in range(20):
        clock.now += 0.5
        stall.beat()
        stall.check()
    assert said == []


def test_a_stall_is_said_once_past_the_threshold_with_the_stack_then_its_end():
    clock, said = FakeClock(), []
    stall = watch(clock, said)
    clock.now += 2.9
    stall.check()
    assert said == [], "below the threshold is not a stall"
    clock.now += 0.2
    stall.check()
    clock.now += 5.0
    stall.check()
    assert len(said) == 1, said
    assert "blocked for 3.1s" in said[0] and said[0].endswith("in:\n  here")
    stall.beat()
    stall.check()
    assert said[1] == "the agent's event loop turns again after 8.1s"
    clock.now += 10
    stall.beat()
    stall.check()
    assert len(said) == 2


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
