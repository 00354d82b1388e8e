"""Log stream throughput and latency, from a dyno's stdout to a `waka logs -t` reader.

    .venv/bin/python bench/logs.py [--lines N] [--steady-seconds S] [--skip-e2e]

End to end, on a real `waka up`: a worker dyno prints numbered, timestamped lines
(`<n> <time_ns> <padding>`), a gRPC tail (follow, source app) reads them.
- burst: N lines written as fast as Python can, in 1000-line writes; lines/s at the reader;
- steady: 1,000 lines/s, one write per line; latency from the dyno's print to the reader.
Lines lost on the way (agent buffer, L11 tail overflow) are counted and printed.

Baseline, in-process in the same run: the LogHub alone (publish batches of 500, as ingest does,
to one tail reader), then the hub with the durable store and with a syslog drain attached, so
the cost of each part is visible.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import trio
from _harness import Waka, start_waka

from waka.controller._drain_url import Drain
from waka.controller._drains import Drains
from waka.controller._logs import LogFilter, LogHub
from waka.controller._logstore import LogStore
from waka.v1 import platform_pb2
from waka.v1.common_pb2 import LogLine

PAD = "p" * 60  # lines of about 90 bytes, like a short app log line
EMITTER = r"""
import os, sys, time
count = int(os.environ["BENCH_LINES"])
rate = float(os.environ["BENCH_RATE"])
pad = os.environ["BENCH_PAD"]
time.sleep(float(os.environ["BENCH_DELAY"]))
out = sys.stdout.buffer
if rate <= 0:
    for start in range(0, count, 1000):
        now = time.time_ns()
        chunk = range(start, min(start + 1000, count))
        out.write("".join(f"{i} {now} {pad}\n" for i in chunk).encode())
        out.flush()
else:
    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        out.write(f"{i} {time.time_ns()} {pad}\n".encode())
        out.flush()
while True:
    time.sleep(3600)
"""


@dataclass
class Reading:
    """What a tail reader saw: per line (receive ns, number, emit ns); lines lost by L11."""

    expected: int
    # (received ns, line number, printed ns, stamped by the agent ns)
    seen: list[tuple[int, int, int, int]] = field(default_factory=list)
    l11_dropped: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def take(self, line: LogLine, received_ns: int) -> None:
        if line.source != "app":
            if "Error L11" in line.text:
                self.l11_dropped += int(line.text.split("dropped ")[1].split()[0])
            return
        number, emitted, _ = line.text.split(" ", 2)
        self.seen.append((received_ns, int(number), int(emitted), line.time_us * 1000))
        if len(self.seen) + self.l11_dropped >= self.expected:
            self.done.set()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def latency_summary(latencies_ms: list[float]) -> str:
    return (
        f"p50 {percentile(latencies_ms, 0.50):.2f} ms  p99 {percentile(latencies_ms, 0.99):.2f} ms"
        f"  max {max(latencies_ms):.2f} ms  (n={len(latencies_ms)})"
    )


# ---------------------------------------------------------------- end to end


def tail_in_thread(waka: Waka, app: str, reading: Reading) -> Callable[[], None]:
    """Follows the app's stream on a thread; returns a function that ends the tail."""
    stub = waka.stub("Logs")
    call = stub.Tail(
        platform_pb2.TailRequest(app=app, num=1500, follow=True, source="app"),
        metadata=waka.metadata,
    )

    def read() -> None:
        try:
            for batch in call:
                now = time.time_ns()
                for line in batch.lines:
                    reading.take(line, now)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    def stop() -> None:
        call.cancel()
        thread.join(10)

    return stop


def run_phase(waka: Waka, work: Path, app: str, lines: int, rate: float) -> Reading:
    source = work / app
    source.mkdir()
    (source / "emit.py").write_text(EMITTER)
    (source / "Procfile").write_text("worker: python3 emit.py\n")
    waka.cli("apps:create", app, "--no-remote")
    waka.cli(
        "config:set",
        "-a",
        app,
        f"BENCH_LINES={lines}",
        f"BENCH_RATE={rate}",
        f"BENCH_PAD={PAD}",
        "BENCH_DELAY=1",
    )
    waka.cli("deploy", "-a", app, str(source))
    reading = Reading(expected=lines)
    stop = tail_in_thread(waka, app, reading)
    try:
        waka.cli("ps:scale", "worker=1", "-a", app)
        budget = 60 + (lines / rate if rate > 0 else lines / 20_000)
        if not reading.done.wait(budget):
            print(f"  ({app}: timed out with {len(reading.seen)} of {lines} lines)")
    finally:
        stop()
        waka.cli("ps:scale", "worker=0", "-a", app)
    return reading


def report_e2e_burst(reading: Reading) -> None:
    seen = reading.seen
    numbers = {n for _, n, _, _ in seen}
    lost = reading.expected - len(numbers)
    first_emit = min(e for _, _, e, _ in seen)
    first_recv, last_recv = min(r for r, *_ in seen), max(r for r, *_ in seen)
    whole = len(seen) / ((last_recv - first_emit) / 1e9)
    reader = len(seen) / max((last_recv - first_recv) / 1e9, 1e-9)
    print(
        f"e2e burst: {len(seen)} lines, {whole:,.0f} lines/s from first print to last read "
        f"({reader:,.0f} lines/s at the reader); lost {lost} (L11 {reading.l11_dropped})"
    )


def report_latency(name: str, reading: Reading) -> None:
    seen = reading.seen
    lost = reading.expected - len({n for _, n, _, _ in seen})
    print(f"{name}: {latency_summary([(r - e) / 1e6 for r, _, e, _ in seen])}; lost {lost}")
    # Where it goes: print -> the agent's read of the output file (its timestamp), then the
    # agent's timestamp -> the reader (shipping, ingest, hub, tail, gRPC to the reader).
    print(f"  print -> agent read:  {latency_summary([(a - e) / 1e6 for _, _, e, a in seen])}")
    print(f"  agent read -> reader: {latency_summary([(r - a) / 1e6 for r, _, _, a in seen])}")


def end_to_end(lines: int, steady_seconds: float) -> None:
    waka = start_waka()
    work = Path(tempfile.mkdtemp(prefix="waka-bench-logs-"))
    try:
        report_e2e_burst(run_phase(waka, work, "burst", lines, 0))
        steady = run_phase(waka, work, "steady", int(1000 * steady_seconds), 1000)
        report_latency("e2e steady 1,000 lines/s", steady)
    finally:
        waka.stop()
        subprocess.run(["rm", "-rf", str(work)], check=True)
        remove_unless_mounted(waka.data_dir.parent)


def remove_unless_mounted(path: Path) -> None:
    """Removes `waka up`'s data dir and log (the harness leaves them), unless something is
    still mounted inside: rm -rf must never walk into a mount."""
    with open("/proc/self/mountinfo") as f:
        mounted = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(path))]
    if mounted:
        print(f"  (left {path}: still mounted there: {mounted[:3]})")
        return
    subprocess.run(["rm", "-rf", str(path)], check=True)


# ---------------------------------------------------------------- in-process baselines


def make_lines(count: int) -> list[LogLine]:
    now = time.time_ns() // 1000
    return [
        LogLine(time_us=now, app="bench", source="app", dyno="worker.1", text=f"{i} 0 {PAD}")
        for i in range(count)
    ]


async def hub_throughput(
    lines: list[LogLine],
    attach: Callable[[LogHub], object],
    settled: Callable[[], object],
) -> float:
    """Lines/s until the tail has every line and `settled()` (the store's flush, the drain's
    delivery) has returned: the rate the configuration sustains, not just the tail's."""
    hub = LogHub(tail_buffer=len(lines))
    await attach(hub)  # type: ignore[misc]
    _, tail = hub.open_tail("bench", LogFilter(source="app"), 0)
    got = 0
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            for i in range(0, len(lines), 500):
                hub.publish(lines[i : i + 500])
                await trio.lowlevel.checkpoint()

        nursery.start_soon(produce)
        while got < len(lines):
            batch = await tail.next_batch(500)
            assert batch is not None
            got += len(batch)
    await settled()  # type: ignore[misc]
    return len(lines) / (time.perf_counter() - started)


async def hub_latency(seconds: float, attach: Callable[[LogHub], object]) -> list[float]:
    hub = LogHub()
    await attach(hub)  # type: ignore[misc]
    _, tail = hub.open_tail("bench", LogFilter(source="app"), 0)
    total = int(seconds * 1000)
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            start = trio.current_time()
            for i in range(total):
                await trio.sleep_until(start + i / 1000)
                now_us = time.time_ns() // 1000
                hub.publish([LogLine(time_us=now_us, app="bench", source="app", text=str(i))])

        nursery.start_soon(produce)
        while len(latencies) < total:
            batch = await tail.next_batch(500)
            assert batch is not None
            now_us = time.time_ns() // 1000
            latencies.extend((now_us - x.time_us) / 1000 for x in batch)
    return latencies


def discard_server() -> tuple[subprocess.Popen[bytes], int]:
    """A syslog receiver in its own process that reads and discards (not our code's CPU)."""
    code = (
        "import socket,sys,threading\n"
        "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1])\n"
        "sys.stdout.flush()\n"
        "def drain(c):\n"
        "    while c.recv(1<<20): pass\n"
        "while True: threading.Thread(target=drain, args=(s.accept()[0],), daemon=True).start()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def baselines(count: int, steady_seconds: float) -> None:
    lines = make_lines(count)
    store_dir = Path(tempfile.mkdtemp(prefix="waka-bench-store-"))
    receiver, port = discard_server()

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def nothing(hub: LogHub) -> None:
                pass

            store = LogStore(store_dir)
            await nursery.start(store.run)

            async def with_store(hub: LogHub) -> None:
                hub._store = store
                store.report_to(lambda app, text: None)

            drains = Drains(lambda *a, **k: None, buffer_lines=count)
            await nursery.start(drains.run)

            async def with_store_and_drain(hub: LogHub) -> None:
                await with_store(hub)
                drains.set_drains("bench", [Drain("1", f"syslog://127.0.0.1:{port}", "d.b")])
                hub.add_sink(drains.offer)

            async def drain_delivered() -> None:
                await store.flush()
                # Polled: delivery counts have no event, and 1 ms is far below a run's length.
                while (info := drains.info("bench")) and info[0].delivered < count:  # noqa: ASYNC110
                    await trio.sleep(0.001)

            for name, attach, settled in [
                ("hub alone", nothing, trio.lowlevel.checkpoint),
                ("hub + store (until flushed)", with_store, store.flush),
                ("hub + store + syslog drain (until sent)", with_store_and_drain, drain_delivered),
            ]:
                rates = []
                for _ in range(3):
                    rates.append(await hub_throughput(lines, attach, settled))
                    drains.set_drains("bench", [])
                print(f"in-process {name}: {max(rates):,.0f} lines/s (best of 3)")
            drains.set_drains("bench", [])
            latencies = await hub_latency(steady_seconds, nothing)
            print(f"in-process hub alone, 1,000 lines/s: {latency_summary(latencies)}")
            await store.aclose()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        receiver.kill()
        receiver.wait()
        subprocess.run(["rm", "-rf", str(store_dir)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    if not args.skip_e2e:
        end_to_end(args.lines, args.steady_seconds)
    if not args.skip_baselines:
        baselines(args.lines, min(args.steady_seconds, 10.0))


if __name__ == "__main__":
    main()
