"""The durable log history: queries by time and filter, restarts, bounds, torn records, and the
hub's use of it (preload, tails from disk) under concurrent producers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from waka.controller._agents import LogIngest
from waka.controller._logs import LogFilter, LogHub
from waka.controller._logstore import MIN_SEGMENT_BYTES, LogStore, iter_segment_lines
from waka.v1.common_pb2 import LogBatch, LogLine

T0 = 1_800_000_000.0  # seconds; every test's fake "now" starts here
US = 1_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def line(text: str, *, t: float = T0, app: str = "a", source: str = "app", dyno: str = "web.1"):
    return LogLine(time_us=int(t * US), app=app, source=source, dyno=dyno, text=text)


def texts(lines) -> list[str]:
    return [x.text for x in lines]


@contextlib.asynccontextmanager
async def running(store: LogStore) -> AsyncIterator[LogStore]:
    """The store with its writer running; everything queued is written on the way out."""
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        try:
            yield store
        finally:
            await store.aclose()
            nursery.cancel_scope.cancel()


def segment_files(root: Path, app: str = "a") -> list[Path]:
    return sorted((root / app).glob("*.seg"))


def test_query_selects_by_since_until_filter_and_keeps_the_last_lines(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock(T0 + 100))
        async with running(store):
            store.append(
                [
                    line("0", t=T0),
                    line("1", t=T0 + 10, dyno="web.2"),
                    line("2", t=T0 + 20, source="waka", dyno="api"),
                    line("3", t=T0 + 30, dyno="worker.1"),
                    line("4", t=T0 + 40),
                    line("other app", t=T0 + 15, app="b"),
                ]
            )
        q = store.query
        assert texts(await q("a")) == ["0", "1", "2", "3", "4"]
        assert texts(await q("a", since_us=int((T0 + 10) * US))) == ["1", "2", "3", "4"]
        assert texts(await q("a", until_us=int((T0 + 30) * US))) == ["0", "1", "2"]
        assert texts(
            await q("a", since_us=int((T0 + 5) * US), until_us=int((T0 + 35) * US), limit=2)
        ) == ["2", "3"]
        assert texts(await q("a", log_filter=LogFilter(dyno="web"))) == ["0", "1", "4"]
        assert texts(await q("a", log_filter=LogFilter(source="waka"))) == ["2"]
        assert texts(await q("b")) == ["other app"]
        assert await q("nope") == []
        assert await q("a", limit=0) == []

    trio.run(main)


def test_query_sees_lines_still_queued_for_the_disk(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            store.append(line(str(i)) for i in range(3))
            await store.flush()
            nursery.cancel_scope.cancel()
        # The writer is stopped: these stay queued, and a query still sees them after the rest.
        store.append(line(str(i)) for i in range(3, 6))
        assert texts(await store.query("a")) == [str(i) for i in range(6)]
        assert texts(await store.query("a", limit=4)) == ["2", "3", "4", "5"]
        store.close()
        assert [ln.text for _, ln in iter_segment_lines(segment_files(tmp_path)[0])] == [
            str(i) for i in range(6)
        ]

    trio.run(main)


def test_history_survives_a_restart_and_new_lines_come_after_it(tmp_path):
    async def main():
        clock = Clock()
        first = LogStore(tmp_path, clock=clock)
        async with running(first):
            first.append(line(f"before {i}") for i in range(1000))
        clock.now += 1  # the restart takes time; seqs follow the clock
        again = LogStore(tmp_path, clock=clock)
        recent = await again.recent(3)
        assert texts(recent["a"]) == ["before 997", "before 998", "before 999"]
        async with running(again):
            again.append([line("after", t=T0 + 1)])
        found = await LogStore(tmp_path, clock=clock).query("a", limit=3)
        assert texts(found) == ["before 998", "before 999", "after"]

    trio.run(main)


def test_lines_past_the_age_bound_are_hidden_then_deleted(tmp_path):
    async def main():
        clock = Clock()
        store = LogStore(tmp_path, clock=clock, max_age=3600)
        async with running(store):
            store.append([line("old", t=T0)])
            await store.flush()
            clock.now = T0 + 1800
            store.append([line("newer", t=T0 + 1800)])
        assert texts(await store.query("a")) == ["old", "newer"]
        clock.now = T0 + 3601
        assert texts(await store.query("a")) == ["newer"]
        # The sweep deletes whole segments; the first one (only "old": segments span at most
        # 1/28 of the age bound) goes.
        async with running(store):
            pass
        remaining = [ln.text for p in segment_files(tmp_path) for _, ln in iter_segment_lines(p)]
        assert remaining == ["newer"]

    trio.run(main)


def test_size_bound_deletes_the_oldest_segments_first(tmp_path):
    async def main():
        budget = 4 * MIN_SEGMENT_BYTES
        store = LogStore(tmp_path, clock=Clock(), max_bytes_per_app=budget)
        async with running(store):
            for chunk in range(40):
                store.append(line(f"{chunk * 100 + i:05d} " + "x" * 200) for i in range(100))
                await trio.lowlevel.checkpoint()
        total = sum(p.stat().st_size for p in segment_files(tmp_path))
        assert total <= budget
        kept = texts(await store.query("a", limit=100_000))
        assert kept[-1].startswith("03999 ")
        numbers = [int(t.split()[0]) for t in kept]
        assert numbers == list(range(numbers[0], 4000)), "what is kept is the newest, unbroken"
        assert numbers[0] > 0

    trio.run(main)


def test_a_torn_last_record_is_skipped_and_cut_before_appending(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        async with running(store):
            store.append([line("one"), line("two")])
        # A crash mid-write: half a record (and zeros, as some file systems leave) at the end.
        (segment,) = segment_files(tmp_path)
        with segment.open("ab") as f:
            f.write(b"\x50\x00\x00\x00\x12\x34" + b"\x00" * 20)
        reader = LogStore(tmp_path, clock=Clock())
        assert texts(await reader.query("a")) == ["one", "two"]
        writer = LogStore(tmp_path, clock=Clock(T0 + 1))
        async with running(writer):
            writer.append([line("three")])
        assert texts(await LogStore(tmp_path, clock=Clock()).query("a")) == ["one", "two", "three"]

    trio.run(main)


def test_a_lost_or_garbled_index_is_rebuilt_from_the_segments(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock(), max_bytes_per_app=16 * MIN_SEGMENT_BYTES)
        async with running(store):
            for chunk in range(10):
                store.append(line(f"{chunk}-{i} " + "y" * 300) for i in range(300))
                await trio.lowlevel.checkpoint()
        assert len(segment_files(tmp_path)) > 2
        (tmp_path / "a" / "index.json").write_text("{not json")
        again = LogStore(tmp_path, clock=Clock())
        found = await again.query("a", log_filter=LogFilter(), limit=10)
        assert [t.split()[0] for t in texts(found)] == [f"9-{i}" for i in range(290, 300)]

    trio.run(main)


@pytest.mark.parametrize("whole_batch", [False, True])
def test_a_full_queue_drops_new_lines_and_the_stream_is_told(tmp_path, whole_batch):
    async def main():
        reports: list[tuple[str, str]] = []
        store = LogStore(tmp_path, clock=Clock(), max_pending=10)
        store.report_to(lambda app, text: reports.append((app, text)))
        # The writer is not running yet. A whole batch that does not fit is stored in part.
        if whole_batch:
            batch = LogBatch(lines=[line(str(i)) for i in range(15)])
            store.append_app("a", batch.lines, batch=batch)
        else:
            store.append(line(str(i)) for i in range(15))
        assert texts(await store.query("a")) == [str(i) for i in range(10)]
        async with running(store):
            pass
        assert reports == [
            (
                "a",
                "Warning: 5 messages were not stored in the log history since "
                "2027-01-15T08:00:00.000000+00:00 (the disk fell behind).",
            )
        ]

    trio.run(main)


def test_a_disk_error_loses_those_lines_says_so_and_the_writer_goes_on(tmp_path):
    async def main():
        reports: list[tuple[str, str]] = []
        store = LogStore(tmp_path, clock=Clock())
        store.report_to(lambda app, text: reports.append((app, text)))
        (tmp_path / "broken").write_text("a file where the app's directory should be")
        async with running(store):
            store.append([line("lost", app="broken"), line("kept", app="fine")])
        assert texts(await LogStore(tmp_path, clock=Clock()).query("fine")) == ["kept"]
        assert [app for app, _ in reports] == ["broken"]
        assert reports[0][1].startswith("Warning: 1 messages were not stored")

    trio.run(main)


def test_forget_deletes_the_history_and_a_new_app_of_that_name_starts_empty(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        async with running(store):
            store.append([line("stored")])
            await store.flush()
            store.append([line("queued")])
            store.forget("a")
            assert await store.query("a") == []
            store.append([line("reborn")])
            assert texts(await store.query("a")) == ["reborn"]
        assert texts(await LogStore(tmp_path, clock=Clock()).query("a")) == ["reborn"]

    trio.run(main)


def test_rename_moves_the_history_and_seqs_and_the_old_name_starts_afresh(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        async with running(store):
            store.append([line("stored")])
            await store.flush()
            store.append([line("queued")])
            store.rename("a", "b")
            store.append([line("renamed", app="b")])
            await store.flush()
            assert texts(await store.query("b")) == ["stored", "queued", "renamed"]
            assert await store.query("a") == []
            store.append([line("a new app a")])
            assert texts(await store.query("a")) == ["a new app a"]
        again = LogStore(tmp_path, clock=Clock())
        assert texts(await again.query("b")) == ["stored", "queued", "renamed"]
        assert texts(await again.query("a")) == ["a new app a"]

    trio.run(main)


def test_hub_rename_keeps_history_tails_and_takes_lines_of_the_old_name(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        hub = LogHub(history=10, store=store, clock=Clock())
        async with running(store):
            hub.publish([line("before")])
            _, tail = hub.open_tail("a", LogFilter(), 0)
            hub.rename("a", "b")
            # A dyno made before the rename still says `a`.
            hub.publish([line("from an old dyno")])
            hub.emit("b", "Renamed from a by admin")
            assert texts(hub.history("b", LogFilter(), 10)) == [
                "before",
                "from an old dyno",
                "Renamed from a by admin",
            ]
            # Lines from now on say the new name (drains forward them under it).
            assert [x.app for x in hub.history("b", LogFilter(), 10)][1:] == ["b", "b"]
            taken = await tail.next_batch(10)
            assert texts(taken or []) == ["from an old dyno", "Renamed from a by admin"]
            assert hub.history("a", LogFilter(), 10) == []
            # A new app called `a` has a stream of its own again.
            hub.name_taken("a")
            hub.publish([line("new a")])
            assert texts(hub.history("a", LogFilter(), 10)) == ["new a"]
            await store.flush()
            assert texts(await store.query("b")) == [
                "before",
                "from an old dyno",
                "Renamed from a by admin",
            ]

    trio.run(main)


def test_hub_refills_its_ring_from_the_store_after_a_restart(tmp_path):
    async def main():
        clock = Clock()
        store = LogStore(tmp_path, clock=clock)
        hub = LogHub(history=5, store=store, clock=clock)
        async with running(store):
            hub.publish(line(str(i)) for i in range(20))
            hub.emit("b", "Release v1 created by admin")
        clock.now += 1
        # As the controller does it: the constructor reads every app's index, so off the loop.
        store = await trio.to_thread.run_sync(lambda: LogStore(tmp_path, clock=clock))
        hub = LogHub(history=5, store=store, clock=clock)
        await hub.preload()
        assert texts(hub.history("a", LogFilter(), 100)) == ["15", "16", "17", "18", "19"]
        assert texts(hub.history("b", LogFilter(), 100)) == ["Release v1 created by admin"]
        async with running(store):
            hub.publish([line("20", t=T0 + 1)])
        assert texts(hub.history("a", LogFilter(), 2)) == ["19", "20"]
        assert texts(await store.query("a", limit=2)) == ["19", "20"]

    trio.run(main)


def test_hub_query_reaches_past_the_ring_with_a_store(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock(T0 + 100))
        hub = LogHub(history=2, store=store, clock=Clock(T0 + 100))
        async with running(store):
            hub.publish(line(str(i), t=T0 + i) for i in range(10))
        found = await hub.query("a", LogFilter(), 3, since_us=int((T0 + 2) * US))
        assert texts(found) == ["7", "8", "9"]
        found = await hub.query(
            "a", LogFilter(), 100, since_us=int((T0 + 2) * US), until_us=int((T0 + 5) * US)
        )
        assert texts(found) == ["2", "3", "4"]
        ring_only = LogHub(history=3)
        ring_only.publish(line(str(i), t=T0 + i) for i in range(10))
        found = await ring_only.query("a", LogFilter(), 100, since_us=int((T0 + 8) * US))
        assert texts(found) == ["8", "9"]

    trio.run(main)


PRODUCERS = 20
LINES_EACH = 300


async def produce(hub: LogHub, producer: int) -> None:
    """One agent's stream: numbered lines in small batches, yielding between batches."""
    for start in range(0, LINES_EACH, 7):
        hub.publish(
            line(f"{producer}:{i}", dyno=f"web.{producer}")
            for i in range(start, min(start + 7, LINES_EACH))
        )
        await trio.lowlevel.checkpoint()


def assert_complete_and_ordered(lines: list[LogLine]) -> None:
    seen: dict[str, list[int]] = {}
    for x in lines:
        producer, number = x.text.split(":")
        seen.setdefault(producer, []).append(int(number))
    assert sorted(seen) == sorted(str(p) for p in range(PRODUCERS))
    for producer, numbers in seen.items():
        assert numbers == list(range(LINES_EACH)), f"producer {producer}: gap, repeat or reorder"


def test_many_concurrent_producers_are_stored_complete_and_in_order(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        hub = LogHub(store=store)
        async with running(store), trio.open_nursery() as nursery:
            for producer in range(PRODUCERS):
                nursery.start_soon(produce, hub, producer)
        stored = await LogStore(tmp_path, clock=Clock()).query("a", limit=1_000_000)
        assert len(stored) == PRODUCERS * LINES_EACH
        assert_complete_and_ordered(stored)

    trio.run(main)


def test_tail_since_has_no_gap_and_no_duplicate_while_producers_publish(tmp_path):
    async def main():
        store = LogStore(tmp_path, clock=Clock())
        hub = LogHub(store=store, tail_buffer=1_000_000)
        async with running(store), trio.open_nursery() as nursery:
            for producer in range(PRODUCERS):
                nursery.start_soon(produce, hub, producer)
            # Let part of it reach the disk, part stay queued, and part come later.
            for _ in range(30):
                await trio.lowlevel.checkpoint()
            history, tail = await hub.open_tail_since("a", LogFilter(), 1_000_000, since_us=0)
            assert 0 < len(history) < PRODUCERS * LINES_EACH
            live: list[LogLine] = []
            while len(history) + len(live) < PRODUCERS * LINES_EACH:
                with trio.fail_after(10):
                    batch = await tail.next_batch(max_lines=100_000)
                assert batch is not None
                live.extend(batch)
            hub.close_tail(tail)
        assert_complete_and_ordered(history + live)

    trio.run(main)


def test_stored_lines_whose_cursors_were_never_committed_are_not_taken_twice(tmp_path):
    """A crash between writing lines and committing their cursors: after the restart, the
    stored lines themselves say how far each dyno's stream got, so a replay is dropped."""

    def numbered(first: int, last: int) -> list[LogLine]:
        return [
            LogLine(
                time_us=int(T0 * US), app="a", source="app", dyno="worker.1",
                text=str(n), stream="dyno-1", offset=n * 10, seq=n,
            )
            for n in range(first, last + 1)
        ]  # fmt: skip

    async def main():
        async with running(LogStore(tmp_path, clock=Clock(T0))) as store:
            store.append(numbered(1, 5))  # on disk; no cursor store given, none committed
        store = LogStore(tmp_path, clock=Clock(T0))
        hub = LogHub(store=store, clock=Clock(T0))
        ingest = LogIngest(hub, log_store=store)
        await ingest.load()
        # The restarted agent reads the stream again from its last saved offset (after 2).
        ingest.take("node", LogBatch(lines=numbered(3, 7)))
        async with running(store):
            await ingest.sync()
        assert texts(await store.query("a")) == ["1", "2", "3", "4", "5", "6", "7"]

    trio.run(main)


def agent_batch(first: int, last: int, *, app: str = "a", stream: str = "dyno-1") -> LogBatch:
    """Lines as an agent ships them: seq and stream offset on each."""
    return LogBatch(
        lines=[
            LogLine(
                time_us=int(T0 * US) + n, app=app, source="app", dyno="worker.1",
                text=str(n), stream=stream, offset=n * 10, seq=n,
            )
            for n in range(first, last + 1)
        ]
    )  # fmt: skip


def test_a_whole_batch_is_stored_as_it_came_and_tails_get_it_as_it_came(tmp_path):
    async def main():
        async with running(LogStore(tmp_path, clock=Clock(T0))) as store:
            hub = LogHub(store=store, clock=Clock(T0))
            ingest = LogIngest(hub, log_store=store)
            _, tail = hub.open_tail("a", LogFilter(source="app"), 0)
            batch = agent_batch(1, 5)
            assert ingest.take("node", batch) == 5
            assert LogBatch.FromString(await tail.next_payload()) == batch
            await ingest.sync()
        ((first_seq, stored), *rest) = list(iter_segment_lines(segment_files(tmp_path)[0]))
        assert first_seq == 1 and stored == batch.lines[0] and len(rest) == 4
        assert texts(await LogStore(tmp_path, clock=Clock(T0)).query("a")) == list("12345")

    trio.run(main)


def test_replays_and_batches_of_several_apps_are_taken_line_by_line(tmp_path):
    async def main():
        async with running(LogStore(tmp_path, clock=Clock(T0))) as store:
            hub = LogHub(store=store, clock=Clock(T0))
            ingest = LogIngest(hub, log_store=store)
            _, tail_a = hub.open_tail("a", LogFilter(), 0)
            _, tail_b = hub.open_tail("b", LogFilter(), 0)
            ingest.take("node", agent_batch(1, 3))
            # Seqs 2-3 again (a resend), then 4-5; and lines of another app in the same batch.
            mixed = agent_batch(2, 5)
            mixed.lines.extend(agent_batch(6, 7, app="b", stream="dyno-2").lines)
            assert ingest.take("node", mixed) == 7
            assert texts(await tail_a.next_batch()) == ["1", "2", "3", "4", "5"]
            assert LogBatch.FromString(await tail_b.next_payload()) == agent_batch(
                6, 7, app="b", stream="dyno-2"
            )
            await ingest.sync()
        again = LogStore(tmp_path, clock=Clock(T0))
        assert texts(await again.query("a")) == ["1", "2", "3", "4", "5"]
        assert texts(await again.query("b")) == ["6", "7"]

    trio.run(main)
