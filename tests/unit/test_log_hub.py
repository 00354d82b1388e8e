import trio

from waka.controller._logs import LogFilter, LogHub, split_long
from waka.v1.common_pb2 import LogBatch, LogLine


def line(text, app="a", source="app", dyno="web.1"):
    return LogLine(time_us=1, app=app, source=source, dyno=dyno, text=text)


def texts(lines):
    return [x.text for x in lines]


def test_history_keeps_only_the_last_lines():
    hub = LogHub(history=3)
    hub.publish(line(str(i)) for i in range(5))
    assert texts(hub.history("a", LogFilter(), 100)) == ["2", "3", "4"]
    assert texts(hub.history("a", LogFilter(), 2)) == ["3", "4"]


def test_history_is_per_app():
    hub = LogHub()
    hub.publish([line("x", app="a"), line("y", app="b")])
    assert texts(hub.history("b", LogFilter(), 10)) == ["y"]


def test_dyno_filter_matches_type_prefix_and_exact_name():
    hub = LogHub()
    hub.publish(
        [
            line("1", dyno="web.1"),
            line("2", dyno="web.2"),
            line("3", dyno="webby.1"),
            line("4", dyno="worker.1"),
        ]
    )
    assert texts(hub.history("a", LogFilter(dyno="web"), 10)) == ["1", "2"]
    assert texts(hub.history("a", LogFilter(dyno="web.2"), 10)) == ["2"]


def test_source_filter_is_exact():
    hub = LogHub()
    hub.publish(
        [line("1", source="app"), line("2", source="waka"), line("3", source="application")]
    )
    assert texts(hub.history("a", LogFilter(source="app"), 10)) == ["1"]


def test_a_mirrored_stream_also_reaches_each_app_with_its_name_as_the_dyno():
    async def main():
        hub = LogHub()
        hub.set_mirrors({"redis-1": ["shop", "blog"], "unattached": []})
        _, tail = hub.open_tail("shop", LogFilter(dyno="redis-1"), 0)
        batch = LogBatch(lines=[line("Ready", app="redis-1", dyno="redis")])
        hub.publish_app("redis-1", batch.lines, batch)
        live = await tail.next_batch()
        assert [(x.app, x.source, x.dyno, x.text) for x in live] == [
            ("shop", "app", "redis-1", "Ready")
        ]
        assert texts(hub.history("blog", LogFilter(), 10)) == ["Ready"]
        # Its own stream keeps the line as it came; an app's own lines are not mirrored back.
        assert [x.dyno for x in hub.history("redis-1", LogFilter(), 10)] == ["redis"]
        hub.publish([line("hi", app="shop")])
        assert texts(hub.history("redis-1", LogFilter(), 10)) == ["Ready"]
        # A new mapping replaces the old one.
        hub.set_mirrors({"redis-1": ["blog"]})
        hub.publish([line("again", app="redis-1", dyno="redis")])
        assert texts(hub.history("shop", LogFilter(), 10)) == ["Ready", "hi"]
        assert texts(hub.history("blog", LogFilter(), 10)) == ["Ready", "again"]
        # A destroyed app is nobody's mirror any more (its name may be taken again).
        hub.forget("blog")
        hub.publish([line("later", app="redis-1", dyno="redis")])
        assert hub.history("blog", LogFilter(), 10) == []

    trio.run(main)


def test_tail_has_no_gap_and_no_duplicate_between_history_and_live():
    async def main():
        hub = LogHub()
        hub.publish(line(str(i)) for i in range(5))
        history, tail = hub.open_tail("a", LogFilter(), 3)
        hub.publish(line(str(i)) for i in range(5, 8))
        live = await tail.next_batch()
        assert texts(history) + texts(live) == ["2", "3", "4", "5", "6", "7"]

    trio.run(main)


def test_slow_tail_drops_oldest_and_says_how_many_with_l11():
    async def main():
        hub = LogHub(tail_buffer=3)
        _, tail = hub.open_tail("a", LogFilter(), 0)
        hub.publish(line(str(i)) for i in range(10))
        batch = await tail.next_batch()
        assert batch[0].text.startswith(
            "Error L11 (Tail buffer overflow) -> This tail session dropped 7 messages since "
        )
        assert texts(batch[1:]) == ["7", "8", "9"]

    trio.run(main)


def test_closed_tail_ends_and_forget_ends_tails():
    async def main():
        hub = LogHub()
        _, tail = hub.open_tail("a", LogFilter(), 0)
        hub.forget("a")
        assert await tail.next_batch() is None
        assert hub.history("a", LogFilter(), 10) == []

    trio.run(main)


def test_platform_lines_are_split_at_10000_bytes():
    hub = LogHub()
    hub.emit("a", "x" * 25_000)
    parts = hub.history("a", LogFilter(), 10)
    assert [len(p.text) for p in parts] == [10_000, 10_000, 5_000]
    assert all(p.source == "waka" and p.dyno == "api" for p in parts)
    assert split_long("é" * 6000)[0].encode()[:2] == "é".encode()


def test_tail_batches_are_bounded_in_lines_and_in_bytes():
    async def main():
        hub = LogHub()
        _, tail = hub.open_tail("a", LogFilter(), 0)
        hub.publish(line("x" * 10_000) for _ in range(300))
        sizes = [len(await tail.next_batch()) for _ in range(3)]
        assert sizes == [100, 100, 100]  # 1 MB of text each, far below gRPC's 4 MB
        hub.publish(line(str(i)) for i in range(6000))
        assert [len(await tail.next_batch()), len(await tail.next_batch())] == [5000, 1000]
        hub.publish(line(str(i)) for i in range(5))
        # A line is always taken, even past the byte bound.
        assert texts(await tail.next_batch(max_lines=3, max_bytes=1)) == ["0"]
        assert texts(await tail.next_batch(max_lines=3)) == ["1", "2", "3"]

    trio.run(main)


def test_a_tail_sends_a_batch_it_was_offered_whole_as_it_came_or_only_what_matches():
    async def main():
        hub = LogHub()
        _, everything = hub.open_tail("a", LogFilter(), 0)
        _, web = hub.open_tail("a", LogFilter(dyno="web"), 0)
        batch = LogBatch(lines=[line("1"), line("2", dyno="worker.1"), line("3", dyno="web.2")])
        hub.publish_app("a", batch.lines, batch)
        assert LogBatch.FromString(await everything.next_payload()) == batch
        assert texts(LogBatch.FromString(await web.next_payload()).lines) == ["1", "3"]

    trio.run(main)


def test_an_overflowing_tail_drops_its_oldest_lines_across_batches_and_says_how_many():
    async def main():
        hub = LogHub(tail_buffer=5)
        _, tail = hub.open_tail("a", LogFilter(), 0)
        first = LogBatch(lines=[line(str(i)) for i in range(3)])
        hub.publish_app("a", first.lines, first)
        second = LogBatch(lines=[line(str(i)) for i in range(3, 7)])
        hub.publish_app("a", second.lines, second)
        sent = LogBatch.FromString(await tail.next_payload()).lines
        assert sent[0].text.startswith("Error L11 (Tail buffer overflow) -> This tail session")
        assert "dropped 2 messages" in sent[0].text
        assert texts(sent[1:]) == ["2", "3", "4", "5", "6"]

    trio.run(main)
