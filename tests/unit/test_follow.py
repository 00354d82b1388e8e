"""OutputFollower and FileWatcher on real files and a real inotify instance."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from waka.agent._follow import FileWatcher, OutputFollower, open_file_watcher

T = TypeVar("T")

# Long enough that only an inotify wake-up can explain a prompt return.
NO_RECHECK = 60.0


def run(async_fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(async_fn)


def file_stat(path: Path) -> os.stat_result:
    return path.stat()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


async def read_until(follower: OutputFollower, count: int) -> tuple[list[str], int]:
    lines: list[str] = []
    offset = follower.offset
    with trio.fail_after(5):
        while len(lines) < count:
            batch, offset = await follower.read_lines()
            lines += batch
    return lines, offset


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "web.1.log"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("read_size", [1, 3, 7, 64, 1 << 20])
def test_lines_split_correctly_across_read_boundaries(log_file: Path, read_size: int) -> None:
    expected = [f"line {i} " + "x" * (i % 13) for i in range(200)] + ["", "after empty"]
    log_file.write_bytes("".join(line + "\n" for line in expected).encode())

    async def main() -> list[str]:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher, read_size=read_size) as follower:
                lines, offset = await read_until(follower, len(expected))
                assert offset == file_stat(log_file).st_size
                return lines

    assert run(main) == expected


def test_available_lines_come_back_in_one_batch(log_file: Path) -> None:
    log_file.write_bytes(b"".join(b"%d\n" % i for i in range(5000)))

    async def main() -> list[str]:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                lines, _ = await follower.read_lines()
                return lines

    assert run(main) == [str(i) for i in range(5000)]


def test_partial_line_is_kept_until_completed(log_file: Path) -> None:
    log_file.write_bytes(b"first\nsec")

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                assert await follower.read_lines() == (["first"], 6)
                append(log_file, b"ond")
                with trio.move_on_after(0.1):
                    await follower.read_lines()
                    pytest.fail("an unterminated line must not be handed out")
                append(log_file, b"\nthird\n")
                lines, offset = await read_until(follower, 2)
                assert lines == ["second", "third"]
                assert offset == len(b"first\nsecond\nthird\n")

    run(main)


@pytest.mark.parametrize(
    ("length", "chunks"),
    [
        (9_999, [9_999]),
        (10_000, [10_000]),
        (10_001, [10_000, 1]),
        (20_000, [10_000, 10_000]),
        (25_000, [10_000, 10_000, 5_000]),
    ],
)
def test_overlong_lines_are_split_into_10000_byte_chunks(
    log_file: Path, length: int, chunks: list[int]
) -> None:
    log_file.write_bytes(b"a" * length + b"\nnext\n")

    async def main() -> list[str]:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher, read_size=4096) as follower:
                lines, _ = await read_until(follower, len(chunks) + 1)
                return lines

    lines = run(main)
    assert [len(line) for line in lines] == [*chunks, 4]
    assert lines[-1] == "next"


def test_overlong_line_is_shipped_before_its_newline_arrives(log_file: Path) -> None:
    log_file.write_bytes(b"b" * 10_500)  # still being written: no newline yet

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                lines, offset = await read_until(follower, 1)
                assert lines == ["b" * 10_000]
                assert offset == 10_000
                append(log_file, b"b\n")
                lines, offset = await read_until(follower, 1)
                assert lines == ["b" * 501]
                assert offset == 10_502

    run(main)


def test_chunk_boundary_never_splits_a_utf8_character(log_file: Path) -> None:
    line = "é" * 6_000  # 12_000 bytes of two-byte characters; 10_000 is a boundary
    shifted = "a" + line  # the 10_000th byte is now inside a character
    log_file.write_bytes(line.encode() + b"\n" + shifted.encode() + b"\n")

    async def main() -> list[str]:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                lines, _ = await read_until(follower, 4)
                return lines

    lines = run(main)
    assert "".join(lines[:2]) == line
    assert "".join(lines[2:]) == shifted
    assert all("\ufffd" not in chunk for chunk in lines)
    assert [len(chunk.encode()) for chunk in lines] == [10_000, 2_000, 9_999, 2_002]


def test_invalid_utf8_is_replaced_not_fatal(log_file: Path) -> None:
    log_file.write_bytes(b"ok \xff\xfe bytes\n")

    async def main() -> list[str]:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                lines, _ = await follower.read_lines()
                return lines

    assert run(main) == ["ok \ufffd\ufffd bytes"]


def test_resume_from_saved_offset_yields_exactly_the_remaining_lines(log_file: Path) -> None:
    log_file.write_bytes(b"".join(b"line %d\n" % i for i in range(10)) + b"partial")

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher, read_size=20) as first:
                shipped, saved = await first.read_lines()  # a restart loses the rest
            append(log_file, b" done\n")
            with OutputFollower(log_file, saved, watcher=watcher) as second:
                rest, offset = await read_until(second, 10 - len(shipped) + 1)
        assert 0 < len(shipped) < 10
        assert shipped + rest == [f"line {i}" for i in range(10)] + ["partial done"]
        assert offset == file_stat(log_file).st_size

    run(main)


def test_release_punches_holes_and_reading_continues(log_file: Path) -> None:
    payload = b"".join(b"%07d %s\n" % (i, b"z" * 100) for i in range(40_000))  # ~4.3 MB
    with log_file.open("wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())  # allocate the blocks now, so st_blocks is meaningful

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                _, offset = await read_until(follower, 40_000)
                blocks_before = file_stat(log_file).st_blocks
                follower.release(offset)
                after = file_stat(log_file)
                assert after.st_size == len(payload), "the logical size must not change"
                assert after.st_blocks < blocks_before / 10, (blocks_before, after.st_blocks)

                append(log_file, b"after release\n")
                assert await read_until(follower, 1) == (["after release"], len(payload) + 14)
                follower.release(offset)  # releasing again is harmless

    run(main)


def test_release_refuses_bytes_not_yet_read(log_file: Path) -> None:
    log_file.write_bytes(b"a\nb")

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                await follower.read_lines()
                with pytest.raises(ValueError, match="only 2 bytes were read"):
                    follower.release(3)

    run(main)


def test_a_write_wakes_the_follower_within_milliseconds(log_file: Path) -> None:
    async def main() -> float:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher, recheck_interval=NO_RECHECK) as f:
                returned = trio.Event()
                async with trio.open_nursery() as nursery:

                    async def follow() -> None:
                        await f.read_lines()
                        returned.set()

                    nursery.start_soon(follow)
                    await trio.sleep(0.05)  # the follower is now parked on the watcher
                    written_at = trio.current_time()
                    append(log_file, b"wake up\n")
                    with trio.fail_after(1):
                        await returned.wait()
                return trio.current_time() - written_at

    assert run(main) < 0.1


def test_many_followers_share_one_watcher(tmp_path: Path) -> None:
    paths = [tmp_path / f"dyno{i}.log" for i in range(200)]
    for path in paths:
        path.write_bytes(b"")

    async def main() -> dict[Path, list[str]]:
        got: dict[Path, list[str]] = {}
        async with open_file_watcher() as watcher:
            followers = [
                OutputFollower(path, watcher=watcher, recheck_interval=NO_RECHECK) for path in paths
            ]
            try:
                with trio.fail_after(3):
                    async with trio.open_nursery() as nursery:
                        for follower in followers:

                            async def follow(f: OutputFollower = follower) -> None:
                                got[f.path], _ = await f.read_lines()

                            nursery.start_soon(follow)
                        await trio.sleep(0.05)
                        for path in paths:
                            append(path, f"hello from {path.name}\n".encode())
            finally:
                for follower in followers:
                    follower.close()
        return got

    got = run(main)
    assert got == {path: [f"hello from {path.name}"] for path in paths}


def test_two_followers_of_one_file_both_wake_and_unwatch_independently(log_file: Path) -> None:
    async def main() -> None:
        async with open_file_watcher() as watcher:
            first = OutputFollower(log_file, watcher=watcher, recheck_interval=NO_RECHECK)
            second = OutputFollower(log_file, watcher=watcher, recheck_interval=NO_RECHECK)
            first.close()  # must not remove the watch the second one still uses
            with second, trio.fail_after(2):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(second.read_lines)
                    await trio.sleep(0.05)
                    append(log_file, b"still watched\n")

    run(main)


def test_periodic_recheck_finds_lines_without_a_running_watcher(log_file: Path) -> None:
    watcher = FileWatcher()  # never run: no inotify event is ever read

    async def main() -> list[str]:
        with OutputFollower(log_file, watcher=watcher, recheck_interval=0.02) as follower:
            lines: list[str] = []
            returned = trio.Event()
            async with trio.open_nursery() as nursery:

                async def follow() -> None:
                    lines.extend((await follower.read_lines())[0])
                    returned.set()

                nursery.start_soon(follow)
                await trio.sleep(0.05)  # parked, and no event will come
                append(log_file, b"found by polling\n")
                with trio.fail_after(2):
                    await returned.wait()
            return lines

    try:
        assert run(main) == ["found by polling"]
    finally:
        watcher.close()


def test_flush_partial_returns_the_unterminated_last_line(log_file: Path) -> None:
    log_file.write_bytes(b"complete\nno newline at exit")

    async def main() -> None:
        async with open_file_watcher() as watcher:
            with OutputFollower(log_file, watcher=watcher) as follower:
                assert (await follower.read_lines())[0] == ["complete"]
                append(log_file, b", really\nlast")
                assert follower.flush_partial() == ["no newline at exit, really", "last"]
                assert follower.offset == file_stat(log_file).st_size
                assert follower.flush_partial() == []

    run(main)


def test_each_line_knows_where_it_ends_in_the_file(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"a\nbb\n" + b"x" * 25 + b"\nrest")

    async def main():
        async with open_file_watcher() as watcher:
            with OutputFollower(path, watcher=watcher, max_line=10) as follower:
                lines, offset = await follower.read_lines()
                assert lines == ["a", "bb", "x" * 10, "x" * 10, "x" * 5]
                assert follower.ends == [2, 5, 15, 25, 31]
                assert offset == 31
                assert follower.flush_partial() == ["rest"]
                assert follower.ends == [35]
            with OutputFollower(path, 2, watcher=watcher, max_line=10) as resumed:
                lines, _ = await resumed.read_lines()
                assert lines[0] == "bb" and resumed.ends[0] == 5

    trio.run(main)
