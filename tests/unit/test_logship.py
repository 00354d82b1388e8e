from __future__ import annotations

from waka.agent._logship import BATCH_BYTES, LogShipper
from waka.v1.agent_pb2 import LogAck
from waka.v1.common_pb2 import LogBatch, LogLine


def lines(count: int, text: str = "x") -> list[LogLine]:
    return [LogLine(app="a", source="app", dyno="web.1", text=f"{text}{i}") for i in range(count)]


def shipped(data: bytes) -> list[str]:
    return [line.text for line in LogBatch.FromString(data).lines]


def test_lines_get_consecutive_seqs_and_ship_in_order_as_one_batch():
    shipper = LogShipper(clock=lambda: 1.0)
    first = shipper.emit(lines(3, "a"))
    last = shipper.emit(LogBatch(lines=lines(2, "b")))
    assert (first, last) == (1_000_003, 1_000_005)
    batch = LogBatch.FromString(shipper._next_batch())
    assert [line.text for line in batch.lines] == ["a0", "a1", "a2", "b0", "b1"]
    assert [line.seq for line in batch.lines] == list(range(1_000_001, 1_000_006))


def test_lines_numbered_while_built_keep_their_seqs_and_move_the_counter_on():
    shipper = LogShipper(clock=lambda: 1.0)
    shipper.emit(lines(2, "a"))
    first = shipper.next_seq
    built = LogBatch(lines=lines(3, "b"))
    for seq, line in enumerate(built.lines, start=first):
        line.seq = seq
    assert shipper.emit(built, numbered=True) == first + 2
    assert shipper.next_seq == first + 3
    batch = LogBatch.FromString(shipper._next_batch())
    assert [line.seq for line in batch.lines] == list(range(first - 2, first + 3))


def test_a_read_of_many_short_lines_stays_one_chunk():
    shipper = LogShipper(clock=lambda: 1.0)
    shipper.emit(lines(30_000))
    assert len(shipper._unsent) == 1
    assert len(shipped(shipper._next_batch())) == 30_000


def test_more_than_a_batch_of_bytes_is_cut_into_batches_in_order():
    shipper = LogShipper(clock=lambda: 1.0)
    long_lines = lines(300, "y" * 9_000)  # about 2.7 MB
    shipper.emit(long_lines)
    batches = []
    while shipper._unsent:
        batches.append(shipper._next_batch())
    assert len(batches) >= 3
    assert all(len(b) <= BATCH_BYTES + 10_000 for b in batches)
    assert [t for b in batches for t in shipped(b)] == [line.text for line in long_lines]


def test_stored_lines_are_forgotten_and_listeners_told():
    shipper = LogShipper(clock=lambda: 1.0)
    acked: list[int] = []
    shipper.on_ack(acked.append)
    last = shipper.emit(lines(5))
    shipper._next_batch()
    shipper._answered(LogAck(seq=last, received=last))
    assert acked == [last]
    assert not shipper._inflight and shipper._buffered == 0


def test_over_the_bound_the_oldest_lines_go_and_are_counted():
    shipper = LogShipper(clock=lambda: 1.0, max_buffered=10)
    for _ in range(4):
        shipper.emit(lines(4))
    assert shipper._buffered <= 10
    assert shipper._dropped == 8
    remaining = [t for chunk in shipper._unsent for t in shipped(chunk.data)]
    assert len(remaining) == 8  # the two newest reads
