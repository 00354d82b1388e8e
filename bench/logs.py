"""Log stream throughput and latency, from dynos' stdout to a `waka logs -t` reader.

    .venv/bin/python bench/logs.py [--runs N] [--lines N] [--dynos N] [--steady-seconds S]
                                   [--split] [--skip-e2e] [--skip-baselines]

End to end, on a real `waka up` (controller and agent in one process, as on a single host), or
with `--split` on `waka server` and `waka agent` as two processes (as a fleet runs them):
worker dynos print numbered, timestamped lines (`<n> <time_ns> <padding>`), a gRPC tail (follow,
source app) reads them.
- burst: N lines in all, split over D dynos that start printing at the same instant, each as
  fast as Python can in 1000-line writes; lines/s from the first print to the last read. Several
  dynos, because one dyno is held to 10,000 lines/s (burst 50,000) by the agent's flood limit;
  the figure is what the controller carries, not what one dyno may send.
- steady: one dyno at 1,000 lines/s, one write per line; latency from the print to the reader,
  split at the agent's read (the line's timestamp).
Each phase runs `--runs` times on the same `waka up`; each run prints its figures and the CPU
seconds the waka process used, and a last line gives the range. Lines lost on the way (agent
buffer, L11 tail overflow, L12 flood limit) are counted and printed.

Baselines, in the same run: the same emitter into a pipe read by a plain Python loop that splits
and decodes lines (the most a Python reader of dyno output can do here); then, in process, the
LogHub alone (publish batches of 500 to one tail), with the durable store, and with a syslog
drain, so the cost of each part is visible.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import trio
from _harness import Waka, start_waka

from waka.controller._drain_url import Drain
from waka.controller._drains import Drains
from waka.controller._logs import LogFilter, LogHub
from waka.controller._logstore import LogStore
from waka.v1 import platform_pb2
from waka.v1.common_pb2 import LogBatch, LogLine

PAD = "p" * 60  # lines of about 90 bytes, like a short app log line
EMITTER = r"""
import os, sys, time
count = int(os.environ["BENCH_LINES"])
rate = float(os.environ["BENCH_RATE"])
pad = os.environ["BENCH_PAD"]
start = float(os.environ.get("BENCH_START", "0"))
time.sleep(max(0.0, start - time.time()))
out = sys.stdout.buffer
if rate <= 0:
    for first in range(0, count, 1000):
        now = time.time_ns()
        chunk = range(first, min(first + 1000, count))
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
if os.environ.get("BENCH_EXIT"):
    sys.exit(0)
while True:
    time.sleep(3600)
"""
# The dynos are told to start this long after `ps:scale`, so all are up and printing at once.
START_DELAY = 4.0


def cpu_seconds(*pids: int) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


@dataclass
class Reading:
    """What a tail reader got: each message as it arrived, parsed later (cheap while it runs)."""

    expected: int
    messages: list[tuple[int, LogBatch]] = field(default_factory=list)
    count: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def take(self, batch: LogBatch, received_ns: int) -> None:
        self.messages.append((received_ns, batch))
        self.count += len(batch.lines)
        if self.count >= self.expected:
            self.done.set()

    def lines(self) -> tuple[list[tuple[int, str, int, int, int]], int]:
        """(received ns, dyno, number, printed ns, agent's read ns) per app line; L11 drops."""
        seen = []
        l11 = 0
        for received, batch in self.messages:
            for line in batch.lines:
                if line.source != "app":
                    if "Error L11" in line.text:
                        l11 += int(line.text.split("dropped ")[1].split()[0])
                    continue
                number, printed, _ = line.text.split(" ", 2)
                seen.append((received, line.dyno, int(number), int(printed), line.time_us * 1000))
        return seen, l11


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def latency_summary(latencies_ms: list[float]) -> str:
    return (
        f"p50 {percentile(latencies_ms, 0.50):.2f} ms  p99 {percentile(latencies_ms, 0.99):.2f} ms"
        f"  max {max(latencies_ms):.2f} ms  (n={len(latencies_ms)})"
    )


def span(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


# ---------------------------------------------------------------- end to end


def tail_in_thread(waka: Waka, app: str, reading: Reading) -> Callable[[], None]:
    """Follows the app's stream on a thread; returns a function that ends the tail."""
    stub = waka.stub("Logs")
    call = stub.Tail(
        platform_pb2.TailRequest(app=app, num=1, follow=True, source="app"),
        metadata=waka.metadata,
    )

    def read() -> None:
        try:
            for batch in call:
                reading.take(batch, time.time_ns())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    def stop() -> None:
        call.cancel()
        thread.join(10)

    return stop


def flood_limited(waka: Waka, app: str) -> int:
    """Lines the agent's flood limit dropped (its L12 lines in the app's stream)."""
    reply = waka.stub("Logs").Tail(
        platform_pb2.TailRequest(app=app, num=1500, source="waka"), metadata=waka.metadata
    )
    return sum(
        int(line.text.split("-> ")[1].split()[0])
        for batch in reply
        for line in batch.lines
        if "Error L12" in line.text
    )


@dataclass
class Phase:
    reading: Reading
    cpu: float  # seconds waka's processes used while the lines went through
    controller_cpu: float | None  # of which the controller's process (with `--split`)
    l12: int


def run_phase(
    waka: Waka, work: Path, app: str, dynos: int, lines_per_dyno: int, rate: float
) -> Phase:
    source = work / app
    source.mkdir()
    (source / "emit.py").write_text(EMITTER)
    (source / "Procfile").write_text("worker: python3 emit.py\n")
    waka.cli("apps:create", app, "--no-remote")
    config = [f"BENCH_LINES={lines_per_dyno}", f"BENCH_RATE={rate}", f"BENCH_PAD={PAD}"]
    waka.cli("config:set", "-a", app, *config)
    waka.cli("deploy", "-a", app, str(source))
    reading = Reading(expected=dynos * lines_per_dyno)
    stop = tail_in_thread(waka, app, reading)
    try:
        waka.cli("config:set", "-a", app, f"BENCH_START={time.time() + START_DELAY}")
        waka.cli("ps:scale", f"worker={dynos}", "-a", app)
        time.sleep(max(0.0, START_DELAY - 1.0))
        cpu_before = cpu_seconds(*waka.pids), cpu_seconds(waka.process.pid)
        budget = 60 + (lines_per_dyno / rate if rate > 0 else reading.expected / 20_000)
        if not reading.done.wait(budget):
            print(f"  ({app}: timed out with {reading.count} of {reading.expected} lines)")
        cpu = cpu_seconds(*waka.pids) - cpu_before[0]
        controller_cpu = cpu_seconds(waka.process.pid) - cpu_before[1] if waka.agent else None
    finally:
        stop()
        waka.cli("ps:scale", "worker=0", "-a", app)
    return Phase(reading, cpu, controller_cpu, flood_limited(waka, app))


def report_burst(phase: Phase) -> float:
    seen, l11 = phase.reading.lines()
    lost = phase.reading.expected - len({(d, n) for _, d, n, _, _ in seen})
    first_print = min(p for *_, p, _ in seen)
    first_read, last_read = min(r for r, *_ in seen), max(r for r, *_ in seen)
    rate = len(seen) / ((last_read - first_print) / 1e9)
    reader = len(seen) / max((last_read - first_read) / 1e9, 1e-9)
    print(
        f"  burst: {len(seen)} lines, {rate:,.0f} lines/s from first print to last read"
        f" ({reader:,.0f} at the reader); waka CPU {phase.cpu:.1f} s"
        f" ({phase.cpu / len(seen) * 1e6:.1f} µs/line"
        f"{_controller_share(phase, len(seen))}); lost {lost}"
        f" (L11 {l11}, L12 {phase.l12})"
    )
    return rate


def _controller_share(phase: Phase, lines: int) -> str:
    if phase.controller_cpu is None:
        return ""
    return f", of which the controller {phase.controller_cpu / lines * 1e6:.1f} µs/line"


def report_steady(phase: Phase) -> tuple[float, float]:
    seen, l11 = phase.reading.lines()
    lost = phase.reading.expected - len({(d, n) for _, d, n, _, _ in seen})
    total = [(r - p) / 1e6 for r, _, _, p, _ in seen]
    print(
        f"  steady 1,000 lines/s: {latency_summary(total)}; waka CPU {phase.cpu:.1f} s;"
        f" lost {lost} (L11 {l11}, L12 {phase.l12})"
    )
    # Where it goes: print -> the agent's read of the output file (its timestamp), then the
    # agent's timestamp -> the reader (shipping, ingest, hub, tail, gRPC to the reader).
    print(f"    print -> agent read:  {latency_summary([(a - p) / 1e6 for _, _, _, p, a in seen])}")
    print(f"    agent read -> reader: {latency_summary([(r - a) / 1e6 for r, _, _, _, a in seen])}")
    return percentile(total, 0.5), percentile(total, 0.99)


def end_to_end(runs: int, lines: int, dynos: int, steady_seconds: float, split: bool) -> None:
    waka = start_waka(split=split)
    print("waka server + waka agent (two processes)" if split else "waka up (one process)")
    work = Path(tempfile.mkdtemp(prefix="waka-bench-logs-"))
    try:
        per_dyno = lines // dynos
        print(f"e2e burst: {dynos} dynos x {per_dyno:,} lines")
        rates = [
            report_burst(run_phase(waka, work, f"burst-{i}", dynos, per_dyno, 0))
            for i in range(runs)
        ]
        print(f"e2e burst range: {span(rates, '{:,.0f}')} lines/s (n={runs})")
        print("e2e steady: 1 dyno at 1,000 lines/s")
        steady = [
            report_steady(run_phase(waka, work, f"steady-{i}", 1, int(1000 * steady_seconds), 1000))
            for i in range(runs)
        ]
        print(
            f"e2e steady range: p50 {span([p for p, _ in steady], '{:.1f}')} ms,"
            f" p99 {span([p for _, p in steady], '{:.1f}')} ms (n={runs})"
        )
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


# ---------------------------------------------------------------- baselines

PIPE_READER = r"""
import sys, time
count = 0
decoded = []
read = sys.stdin.buffer.read1
pending = b""
while chunk := read(256 * 1024):
    data = pending + chunk
    end = data.rfind(b"\n")
    parts = data[:end].split(b"\n")
    decoded = [part.decode("utf-8", "replace") for part in parts]
    count += len(decoded)
    pending = data[end + 1 :]
print(count, time.time_ns())
"""


def pipe_baseline(lines: int) -> float:
    """The emitter into a pipe, read by a plain Python loop that splits and decodes lines."""
    env = {
        **os.environ,
        "BENCH_LINES": str(lines),
        "BENCH_RATE": "0",
        "BENCH_PAD": PAD,
        "BENCH_EXIT": "1",
    }
    started = time.time_ns()
    emitter = subprocess.Popen([sys.executable, "-c", EMITTER], stdout=subprocess.PIPE, env=env)
    reader = subprocess.run(
        [sys.executable, "-c", PIPE_READER], stdin=emitter.stdout, capture_output=True, check=True
    )
    emitter.wait()
    count, finished = map(int, reader.stdout.split())
    assert count == lines, (count, lines)
    return lines / ((finished - started) / 1e9)


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


def baselines(runs: int, count: int, steady_seconds: float) -> None:
    rates = [pipe_baseline(count) for _ in range(runs)]
    print(f"baseline pipe -> Python line reader: {span(rates, '{:,.0f}')} lines/s (n={runs})")
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
                for _ in range(runs):
                    rates.append(await hub_throughput(lines, attach, settled))
                    drains.set_drains("bench", [])
                print(f"in-process {name}: {span(rates, '{:,.0f}')} lines/s (n={runs})")
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure (default 3)")
    parser.add_argument("--lines", type=int, default=400_000, help="burst lines in all")
    parser.add_argument(
        "--dynos", type=int, default=10, help="burst dynos (each stays within its flood limit)"
    )
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument(
        "--split",
        action="store_true",
        help="run `waka server` and `waka agent` as two processes, as a fleet does, instead of"
        " `waka up`",
    )
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    if not args.skip_e2e:
        end_to_end(args.runs, args.lines, args.dynos, args.steady_seconds, args.split)
    if not args.skip_baselines:
        baselines(args.runs, args.lines, min(args.steady_seconds, 10.0))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
