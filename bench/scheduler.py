"""The scheduler at fleet scale: a real controller, 200 simulated nodes, 10,000 dynos.

    .venv/bin/python bench/scheduler.py [--size 20x1000 --size 200x10000] [--cprofile | --profile]

For each size NODESxDYNOS, on a fresh data dir:
1. `waka server` on free loopback ports, and one real `waka agent` (node `builder`) for builds.
2. DYNOS/100 apps (an app runs at most 100 dynos), each deployed with `waka deploy` from a
   Procfile-only directory (`worker: ...`); then `waka nodes:cordon builder`, so no dyno lands on
   the builder.
3. NODES simulated agents (bench/_fleet_sim.py, one process) join and open their sessions: real
   protocol, dynos "run" instantly and are reported up with a port.
4. Every app is scaled to `worker=100` (Formation.Scale, a few requests in flight at once), and the
   clock runs until every dyno is reported up by the fleet ("converged"), then until the API's
   Dynos.List shows them all up. Measured: the controller's CPU time and peak RSS over the scale
   (psutil, /proc VmHWM), its CPU while the fleet idles with every dyno up, the fleet's own CPU.
5. One simulated node is killed; measured: the time until its dynos run elsewhere, split into the
   liveness wait (until the first replacement is assigned: the controller's `down_after`) and the
   scheduling (from then until all are up).
The baseline, from the same run: the same placements made by the pure policy in this process
(`plan_app` + `place`, no SQLite, no gRPC, a NodeLoad per node per dyno as the reconciler once
did), i.e. the decision without the machinery; and the same placements by `Placer` (what the
reconciler uses now: node loads kept in heaps for the pass), checked to choose exactly the same
nodes.

`--cprofile` runs the controller under cProfile (this script starts it, one profiler per thread,
timed by each thread's own CPU clock) and prints where the CPU time of the scale, the idle window
after it and the failover went: the difference of two snapshots the controller writes on SIGUSR1.
`--profile` attaches py-spy instead (`pip install py-spy`; found on PATH, next to this Python, or
given with `--py-spy`). Either profiler costs the controller CPU (under cProfile the 200x10000
scale took five times as long), so the timing figures of a profiled run are noted as such; take
timings from a run without one.

The controller's gRPC pool must hold one session stream per node (the simulated nodes open no log
stream) plus the builder's two streams and the API calls; `waka server` takes `--grpc-workers` for
it (default 1000). This script passes `--grpc-workers` only when asked to, e.g. `--grpc-workers 200`
shows the old default failing a 200-node fleet.

Run as root (the builder agent builds in sandboxes) from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import math
import os
import pstats
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from _harness import REPO, WAKA, wait_for

from waka.cli.main import main as waka_main
from waka.controller._placement import NodeInfo, NodeLoad, Placer, place, plan_app
from waka.v1 import platform_pb2 as pb
from waka.v1 import platform_pb2_grpc as pb_grpc
from waka.v1.common_pb2 import DynoState

PER_APP_LIMIT = 100  # controller/_formation.py MAX_DYNOS_PER_APP
DEFAULT_GRPC_WORKERS = 1000  # controller/_server.py ControllerConfig.grpc_workers
RPC_HEADROOM = 8  # the server allows grpc_workers - 8 concurrent RPCs
BUILDER = "builder"
PROCFILE = "worker: while true; do sleep 3600; done\n"


def now() -> float:
    return time.monotonic()


def run_checked(args: list[str], env: dict[str, str], what: str, timeout: float = 300) -> str:
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def stop_process(process: subprocess.Popen, what: str, timeout: float = 60) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  ! {what} ignored SIGTERM for {timeout:.0f} s; killing it", file=sys.stderr)
            process.kill()
            process.wait(10)
    return process.returncode


# ---------------------------------------------------------------- the daemons


@dataclass
class Controller:
    process: subprocess.Popen[bytes]
    data_dir: Path
    api: str
    admin_token: str
    join_token: str
    grpc_workers: int

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "WAKA_DATA_DIR": str(self.data_dir), "NO_COLOR": "1"}

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.admin_token}"),)

    def cli(self, *args: str) -> str:
        return run_checked([WAKA, *args], self.env, f"waka {' '.join(args)}")


def start_controller(work: Path, grpc_workers: int, *, cprofile: bool = False) -> Controller:
    data_dir = work / "controller"
    options = [
        "--data-dir",
        str(data_dir),
        "--api",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--router",
        "127.0.0.1:0",
        "--agent-api",
        "127.0.0.1:0",
        "--log-level",
        "warning",
    ]
    if grpc_workers != DEFAULT_GRPC_WORKERS:
        options += ["--grpc-workers", str(grpc_workers)]
    command = [WAKA, "server", *options]
    if cprofile:
        command = [
            sys.executable,
            __file__,
            PROFILED_CONTROLLER,
            str(work / "cprofile"),
            *command[1:],
        ]
    log = (work / "controller.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    info_file = data_dir / "controller.json"
    deadline = now() + 120
    while not info_file.exists():
        if process.poll() is not None or now() > deadline:
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            exited = process.poll() is not None
            state = f"exited with {process.returncode}" if exited else "wrote no controller.json"
            raise RuntimeError(f"the controller {state}; its log ends:\n{tail}")
        time.sleep(0.05)
    info = wait_for(lambda: json.loads(info_file.read_text()), 10, "a complete controller.json")
    return Controller(
        process,
        data_dir,
        info["api"],
        (data_dir / "admin-token").read_text().strip(),
        (data_dir / "join-token").read_text().strip(),
        grpc_workers,
    )


def start_builder(work: Path, controller: Controller) -> subprocess.Popen[bytes]:
    log = (work / "builder.log").open("wb")
    return subprocess.Popen(
        [
            WAKA,
            "agent",
            "--controller",
            controller.api,
            "--token",
            controller.join_token,
            "--data-dir",
            str(work / "builder"),
            "--name",
            BUILDER,
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Api:
    """The platform API as the benchmark uses it (admin token)."""

    def __init__(self, controller: Controller) -> None:
        self.channel = grpc.insecure_channel(controller.api)
        self.metadata = controller.metadata
        self.apps = pb_grpc.AppsStub(self.channel)
        self.formation = pb_grpc.FormationStub(self.channel)
        self.dynos = pb_grpc.DynosStub(self.channel)
        self.nodes = pb_grpc.NodesStub(self.channel)

    def node_states(self) -> dict[str, str]:
        reply = self.nodes.List(pb.Empty(), metadata=self.metadata, timeout=30)
        return {n.name: n.state for n in reply.nodes}

    def scale(self, app: str, quantity: int) -> float:
        started = now()
        self.formation.Scale(
            pb.ScaleRequest(
                app=app,
                changes=[pb.ScaleChange(type="worker", quantity=quantity, has_quantity=True)],
            ),
            metadata=self.metadata,
            timeout=600,
        )
        return now() - started

    def up_count(self, app: str) -> int:
        reply = self.dynos.List(pb.AppRef(app=app), metadata=self.metadata, timeout=60)
        return sum(1 for d in reply.dynos if d.state == DynoState.DYNO_STATE_UP)

    def close(self) -> None:
        self.channel.close()


class SilenceProbe:
    """How long nodes seem silent to the controller, from Nodes.List's last_seen once a second.

    Agents send a status at least every 5 s and the controller marks a node heard when it reads a
    message, so a silence well past 5 s means messages wait in the controller before it reads
    them (and at 10 s a node turns `suspect`: no new dynos go there).
    """

    def __init__(self, api: Api, ignore: set[str], interval: float = 1.0) -> None:
        self.api = api
        self.ignore = ignore
        self.interval = interval
        self.longest = 0.0
        self.longest_node = ""
        self.not_ready: Counter[str] = Counter()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> SilenceProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reply = self.api.nodes.List(pb.Empty(), metadata=self.api.metadata, timeout=30)
            except grpc.RpcError:
                continue
            wall = time.time()
            self.polls += 1
            for node in reply.nodes:
                if node.name in self.ignore:
                    continue
                heard = node.last_seen.seconds + node.last_seen.nanos / 1e9
                if wall - heard > self.longest:
                    self.longest, self.longest_node = wall - heard, node.name
                if node.state not in {"ready", "cordoned"}:
                    self.not_ready[node.state] += 1

    def summary(self) -> str:
        if not self.polls:
            return "not sampled (the phase was shorter than one poll interval)"
        seen = ", ".join(f"{n} node-polls {state}" for state, n in self.not_ready.items())
        return f"{self.longest:.1f} s ({self.longest_node}); {seen or 'every node ready'}"


# ---------------------------------------------------------------- the simulated fleet


class FleetProcess:
    """bench/_fleet_sim.py as a child process, driven by JSON lines."""

    def __init__(self, controller: Controller, work: Path) -> None:
        self.stderr = (work / "fleet.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "_fleet_sim.py"),
                "--controller",
                controller.api,
                "--token",
                controller.join_token,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
        )
        self._replies: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._replies.put(line)
        self._replies.put(b"")

    def request(self, reply_within: float, **command: object) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        try:
            line = self._replies.get(timeout=reply_within)
        except queue.Empty:
            raise TimeoutError(
                f"the fleet did not answer {command['cmd']!r} in {reply_within:.0f} s"
            ) from None
        if not line:
            raise RuntimeError(f"the fleet exited ({self.process.poll()}); see {self.stderr.name}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"fleet {command['cmd']}: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.request(30, cmd="quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        if self.process.poll() is None:
            stop_process(self.process, "the fleet", 10)


# ---------------------------------------------------------------- measuring


def read_vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Makes VmHWM start again from the current RSS (Linux >= 4.0, `5` in clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class Meter:
    """CPU seconds and peak RSS of one process between start() and stop()."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.cpu = 0.0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _cpu_now(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def start(self) -> Meter:
        reset_peak_rss(self.pid)
        self._cpu0, self._wall0 = self._cpu_now(), now()
        self.peak_rss = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def stop(self) -> Meter:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.cpu = self._cpu_now() - self._cpu0
        self.wall = now() - self._wall0
        self.peak_rss = max(self.peak_rss, read_vm_hwm_kb(self.pid) * 1024)
        return self

    @property
    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20


@dataclass(frozen=True)
class Profiler:
    py_spy: str
    rate: int
    all_threads: bool


def find_py_spy(given: str) -> str | None:
    if given:
        return given
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profile:
    """py-spy record on a pid, in raw (collapsed stack) format, until stop().

    By default only the thread holding the GIL is sampled (`--gil`): that is exactly where the
    controller's Python time goes, and it is cheap enough to keep up with a controller of 200+
    threads (sampling every thread's state fell a minute behind here). SQLite's own C work runs
    with the GIL released, so it shows only with `all_threads`.
    """

    def __init__(self, py_spy: str, pid: int, out: Path, rate: int, all_threads: bool) -> None:
        self.out = out
        self.log = out.with_suffix(".log").open("wb")
        self.process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                *([] if all_threads else ["--gil"]),
                "--output",
                str(out),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(1.0)  # py-spy needs a moment to attach; samples before that are lost
        if self.process.poll() is not None:
            raise RuntimeError(
                f"py-spy exited at once ({self.process.returncode}); see {self.log.name}"
            )

    def stop(self) -> list[tuple[list[str], int]]:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        behind = [
            line.strip()
            for line in self.out.with_suffix(".log").read_text(errors="replace").splitlines()
            if "behind in sampling" in line
        ]
        if behind:
            print(f"  ! py-spy: {behind[-1]}", flush=True)
        stacks = []
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                path, _, count = line.rpartition(" ")
                if path and count.isdigit():
                    stacks.append((path.split(";"), int(count)))
        return stacks


# Leaf frames of a thread that waits: py-spy's idle detection misses these in --threads mode.
WAITING = (
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    "EpollIOManager.get_events (trio/_core/_io_epoll.py)",
    "WorkerThread._work (trio/_core/_thread_cache.py)",
)


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _thread_kind(calls: list[str]) -> str:
    """What a thread is, from its stack (trio renames its cached threads, so names mislead)."""
    stack = ";".join(calls)
    if "WorkerThread._work (trio" in stack:
        if "_next_or_none" in stack:
            return "trio worker threads: reading agents' streams (next_request)"
        # Store.read/write hand their function to trio.to_thread: it is the thread's stack.
        return "trio worker threads: Store transactions (SQL + the Python inside)"
    if "_serve (grpc/_server.py)" in stack:
        return "gRPC server poll thread"
    if "concurrent/futures/thread.py" in stack:
        return "gRPC handler threads (servicers, Bridge.run)"
    if "trio/_core/_run.py" in stack:
        return "trio event loop (MainThread)"
    return "other threads"


def profile_report(stacks: list[tuple[list[str], int]], top: int = 18) -> list[str]:
    busy = [
        (frames, count)
        for frames, count in stacks
        if len(frames) > 1 and _function(frames[-1]) not in WAITING
    ]
    total = sum(count for _, count in busy)
    if not total:
        return ["  (py-spy took no samples)"]
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in busy:
        calls = [_function(f) for f in frames[1:]]
        threads[_thread_kind(calls)] += count
        for function in set(calls):
            inclusive[function] += count
        own[calls[-1]] += count
    lines = [f"  {total} samples (shares below are of these)"]
    lines.append("  by thread:")
    lines += [f"    {n * 100 / total:5.1f}%  {kind}" for kind, n in threads.most_common()]
    lines.append("  waka functions, inclusive (the function and what it calls):")
    waka = [(f, n) for f, n in inclusive.most_common() if "controller/" in f or "waka/" in f]
    lines += [f"    {n * 100 / total:5.1f}%  {f}" for f, n in waka[:top]]
    lines.append("  any function, self (where the samples land):")
    lines += [f"    {n * 100 / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return lines


@dataclass(frozen=True)
class CProfiler:
    """`--cprofile`: the controller runs under profiled_controller(); phases are snapshot diffs."""


PROFILED_CONTROLLER = "--as-profiled-controller"


def profiled_controller(out: Path, argv: list[str]) -> int:
    """`waka ARGV` with a cProfile profiler in every thread, each timed by its thread's CPU clock
    (so a thread waiting for the GIL, a lock or SQLite's file lock costs nothing). On SIGUSR1, and
    at exit, the profilers' totals so far are merged into OUT/N.prof (pstats), N = 0, 1, ...

    A thread's profiler is only read from the main thread (getstats under the GIL), never
    stopped, so every thread keeps its own profiler to the end."""
    out.mkdir(parents=True, exist_ok=True)
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_event: object) -> None:
        # threading.setprofile's hook runs once in each new thread; enable() replaces it.
        profiler = cProfile.Profile(time.thread_time)
        with lock:
            profilers.append(profiler)
        profiler.enable()

    class Taken:
        def __init__(self, profiler: cProfile.Profile) -> None:
            self.profiler = profiler

        def create_stats(self) -> None:  # what pstats.Stats calls; snapshot without disable()
            self.profiler.snapshot_stats()
            self.stats = self.profiler.stats

    written = 0

    def snapshot(*_signal: object) -> None:
        nonlocal written
        main_profiler.disable()
        with lock:
            taken = [Taken(p) for p in profilers]
        stats = pstats.Stats(*taken)
        path = out / f"{written}.prof"
        stats.dump_stats(path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
        written += 1
        main_profiler.enable()

    threading.setprofile(start_in_thread)
    main_profiler = cProfile.Profile(time.thread_time)
    profilers.append(main_profiler)
    signal.signal(signal.SIGUSR1, snapshot)
    main_profiler.enable()
    try:
        return waka_main(argv)
    finally:
        snapshot()


def cprofile_snapshot(pid: int, directory: Path) -> dict:
    """Asks the profiled controller for a snapshot; returns its pstats table."""
    path = directory / f"{len(list(directory.glob('*.prof')))}.prof"
    os.kill(pid, signal.SIGUSR1)
    wait_for(path.exists, 120, f"the controller's profile snapshot {path.name}", interval=0.1)
    return pstats.Stats(str(path)).stats


def _where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in: `<method 'execute' of 'sqlite3.Cursor' objects>`
    path = filename
    for root in (f"{REPO}/", "site-packages/", "/lib/python3"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{name} ({path}:{line})"


def cprofile_report(before: dict, after: dict, top: int = 15) -> list[str]:
    """What the phase between two snapshots cost: self and inclusive CPU seconds per function.
    Inclusive time counts a call when it returns, so a loop that never returns shows only its
    callees."""
    own: dict[tuple, float] = {}
    inclusive: dict[tuple, float] = {}
    calls: dict[tuple, int] = {}
    for func, (_cc, nc, tt, ct, _callers) in after.items():
        old = before.get(func, (0, 0, 0.0, 0.0, {}))
        own[func], inclusive[func], calls[func] = tt - old[2], ct - old[3], nc - old[1]
    total = sum(own.values())
    if total <= 0:
        return ["  (no CPU time profiled)"]
    lines = [f"  {total:.1f} s of CPU profiled, every thread (shares below are of it)"]
    lines.append("  self time (where the CPU went):")
    for func in sorted(own, key=own.__getitem__, reverse=True)[:top]:
        lines.append(
            f"    {own[func] * 100 / total:5.1f}%  {own[func]:6.2f} s  {calls[func]:>9} calls"
            f"  {_where(func)}"
        )
    lines.append("  waka functions, inclusive (the function and what it calls):")
    waka = [f for f in inclusive if "/controller/" in f[0] or "/waka/" in f[0]]
    for func in sorted(waka, key=inclusive.__getitem__, reverse=True)[:top]:
        lines.append(
            f"    {inclusive[func] * 100 / total:5.1f}%  {inclusive[func]:6.2f} s"
            f"  {calls[func]:>9} calls  {_where(func)}"
        )
    return lines


# ---------------------------------------------------------------- the baseline


def placement_baseline(
    nodes: int, apps: int, per_app: int, need_mb: int = 512
) -> tuple[float, list[str]]:
    """The pure policy placing the same dynos the way the reconciler calls it (a NodeLoad for
    every node for every dyno): seconds, and the nodes chosen."""
    names = [f"sim-{i + 1:03d}" for i in range(nodes)]
    committed: dict[str, int] = {}
    groups: dict[tuple[str, str], int] = {}
    choices = []
    started = time.perf_counter()
    for a in range(apps):
        app = f"app-{a}"
        plan = plan_app({"worker": per_app}, {"worker": "x"}, 1, [], lambda _dyno: None)
        for _ptype, _idx in plan.create:
            loads = [
                NodeLoad(
                    node_id=n,
                    name=n,
                    capacity_mb=SIM_MEMORY_MB,
                    committed_mb=committed.get(n, 0),
                    same_group=groups.get((n, app), 0),
                    has_slug=False,
                )
                for n in names
            ]
            chosen = place(loads, need_mb).node_id
            assert chosen is not None
            committed[chosen] = committed.get(chosen, 0) + need_mb
            groups[(chosen, app)] = groups.get((chosen, app), 0) + 1
            choices.append(chosen)
    return time.perf_counter() - started, choices


def placement_with_placer(
    nodes: int, apps: int, per_app: int, need_mb: int = 512
) -> tuple[float, list[str]]:
    """The same placements the way the reconciler makes them now: one `Placer` per app's pass
    (node loads built once, kept in heaps). Must choose exactly the same nodes."""
    names = [f"sim-{i + 1:03d}" for i in range(nodes)]
    committed = dict.fromkeys(names, 0)
    choices = []
    started = time.perf_counter()
    for _a in range(apps):
        plan = plan_app({"worker": per_app}, {"worker": "x"}, 1, [], lambda _dyno: None)
        placer = Placer(
            [NodeInfo(n, n, SIM_MEMORY_MB, committed[n], has_slug=False) for n in names]
        )
        for ptype, _idx in plan.create:
            chosen = placer.place(ptype, need_mb).node_id
            assert chosen is not None
            committed[chosen] += need_mb
            choices.append(chosen)
    return time.perf_counter() - started, choices


SIM_MEMORY_MB = 65536  # bench/_fleet_sim.py SIM_INVENTORY.memory_total_mb


# ---------------------------------------------------------------- one size


@dataclass
class Result:
    nodes: int
    dynos: int
    apps: int
    grpc_workers: int
    profiled: bool
    figures: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.figures[name] = value
        print(f"  {name}: {value}", flush=True)


@contextlib.contextmanager
def maybe_profile(
    profiler: Profiler | CProfiler | None, pid: int, out: Path, result: Result, phase: str
) -> Iterator[None]:
    """Records the controller with py-spy or cProfile while the body runs (when asked to)."""
    if profiler is None:
        yield
        return
    if isinstance(profiler, CProfiler):
        snapshots = out.parent / "cprofile"
        before = cprofile_snapshot(pid, snapshots)
        try:
            yield
        finally:
            result.profiles[phase] = cprofile_report(before, cprofile_snapshot(pid, snapshots))
        return
    profile = Profile(profiler.py_spy, pid, out, profiler.rate, profiler.all_threads)
    try:
        yield
    finally:
        result.profiles[phase] = profile_report(profile.stop())


def deploy_apps(
    controller: Controller, api: Api, apps: list[str], work: Path, parallel: int
) -> None:
    source = work / "source"
    source.mkdir()
    (source / "Procfile").write_text(PROCFILE)
    for app in apps:
        api.apps.Create(pb.CreateAppRequest(name=app), metadata=api.metadata, timeout=60)

    def deploy(app: str) -> None:
        controller.cli("deploy", "-a", app, str(source))

    # Every app builds the same slug. Two builds of one slug finishing together on the builder
    # race to rename their tree into place (agent/_slugs.py adopt_build checks, then renames:
    # "Directory not empty"), so the first build runs alone and the rest find the slug there.
    deploy(apps[0])
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(deploy, apps[1:]))


def wait_api_up(api: Api, quantities: dict[str, int], timeout: float) -> float:
    """Polls Dynos.List until every app shows its dynos up; returns when that was seen."""
    deadline = now() + timeout
    pending = dict(quantities)
    while pending:
        for app in list(pending):
            if api.up_count(app) >= pending[app]:
                del pending[app]
        if pending and now() > deadline:
            raise TimeoutError(f"the API still shows {len(pending)} apps short of their dynos")
        if pending:
            time.sleep(0.2)
    return now()


@dataclass
class Bench:
    """One size's running parts, handed to each phase."""

    args: argparse.Namespace
    profiler: Profiler | CProfiler | None
    work: Path
    result: Result
    quantities: dict[str, int]
    controller: Controller
    api: Api
    fleet: FleetProcess

    @property
    def pid(self) -> int:
        return self.controller.process.pid

    def profile(self, phase: str, file: str) -> contextlib.AbstractContextManager[None]:
        return maybe_profile(self.profiler, self.pid, self.work / file, self.result, phase)


def idle_cpu(bench: Bench, name: str, extra: str = "") -> None:
    time.sleep(bench.args.settle)
    idle = Meter(bench.pid).start()
    time.sleep(bench.args.idle_window)
    idle.stop()
    bench.result.add(
        name,
        f"{idle.cpu / idle.wall * 100:.1f}% of a core  (RSS {idle.rss_mb:.0f} MB{extra})",
    )


def scale_phase(bench: Bench) -> dict:
    """Scales every app at once and times the fleet's convergence; returns the fleet's stats."""
    args, api, fleet, quantities = bench.args, bench.api, bench.fleet, bench.quantities
    fleet.request(30, cmd="expect", counts=quantities)
    meter = Meter(bench.pid).start()
    with (
        bench.profile("scale", "scale.txt"),
        SilenceProbe(api, {BUILDER}, args.probe_interval) as silence,
    ):
        t0 = now()
        with ThreadPoolExecutor(args.scale_parallel) as pool:
            latencies = list(pool.map(lambda app: api.scale(app, quantities[app]), quantities))
        t_answered = now()
        converged = fleet.request(args.timeout + 30, cmd="wait", timeout=args.timeout)
        t_api = wait_api_up(api, quantities, args.timeout)
    meter.stop()
    add = bench.result.add
    add(
        "scale requests answered",
        f"{t_answered - t0:.2f} s  (each {min(latencies):.2f}-{max(latencies):.2f} s,"
        f" {args.scale_parallel} in flight)",
    )
    add("first dyno assigned", f"{converged['first_start'] - t0:.2f} s")
    add("CONVERGED: every dyno reported up", f"{converged['met_at'] - t0:.2f} s")
    add("API Dynos.List shows every dyno up", f"{t_api - t0:.2f} s")
    add(
        "controller CPU over the scale",
        f"{meter.cpu:.1f} s in {meter.wall:.1f} s ({meter.cpu / meter.wall * 100:.0f}% of a core)",
    )
    add("controller peak RSS over the scale", f"{meter.peak_rss / 2**20:.0f} MB")
    add("longest silence seen by the controller, scale", silence.summary())
    stats = fleet.request(30, cmd="stats")
    counters = stats["counters"]
    add(
        "protocol traffic so far",
        f"{counters.get('received assignment', 0)} assignments carrying"
        f" {counters.get('assigned dyno specs', 0)} dyno specs;"
        f" {counters.get('sent status', 0)} statuses carrying"
        f" {counters.get('sent dyno statuses', 0)} dyno statuses;"
        f" {stats['reconnects']} reconnects",
    )
    errors = {k: v for k, v in counters.items() if k.startswith("session error")}
    if errors:
        add("session errors", json.dumps(errors))
    return stats


def failover_phase(bench: Bench, per_node: dict[str, int]) -> None:
    """Kills the busiest simulated node and times until its dynos run elsewhere."""
    victim = max(per_node, key=lambda name: per_node[name])
    with (
        bench.profile("failover", "failover.txt"),
        SilenceProbe(bench.api, {BUILDER, victim}, bench.args.probe_interval) as silence,
    ):
        gone = bench.fleet.request(30, cmd="disconnect", node=victim, expect=bench.quantities)
        moved = bench.fleet.request(bench.args.timeout + 30, cmd="wait", timeout=bench.args.timeout)
    bench.result.add(
        f"RE-CONVERGED after {victim} ({gone['dynos']} dynos) disconnected",
        f"{moved['met_at'] - gone['at']:.2f} s = liveness wait"
        f" {moved['first_start'] - gone['at']:.2f} s + scheduling"
        f" {moved['met_at'] - moved['first_start']:.2f} s",
    )
    bench.result.add("longest silence seen by the controller, failover", silence.summary())


def run_phases(
    args: argparse.Namespace,
    profiler: Profiler | CProfiler | None,
    work: Path,
    result: Result,
    quantities: dict[str, int],
    controller: Controller,
    api: Api,
    fleets: list[FleetProcess],
) -> None:
    """Deploy, join, scale, idle, failover: every figure of one size, in order."""
    wait_for(lambda: api.node_states().get(BUILDER) == "ready", 60, "the builder to be ready")
    started = now()
    deploy_apps(controller, api, list(quantities), work, args.deploy_parallel)
    result.add("deploy apps (builder agent)", f"{len(quantities)} in {now() - started:.1f} s")
    controller.cli("nodes:cordon", BUILDER)

    fleet = FleetProcess(controller, work)
    fleets.append(fleet)  # the caller closes it, whatever happens here
    fleet_meter = Meter(fleet.process.pid).start()
    rss_before = Meter(controller.process.pid).rss_mb
    joined = fleet.request(
        args.join_timeout + 30, cmd="join", count=result.nodes, timeout=args.join_timeout
    )
    result.add("join + first assignment, all nodes", f"{joined['seconds']:.2f} s")
    bench = Bench(args, profiler, work, result, quantities, controller, api, fleet)
    idle_cpu(
        bench,
        "controller idle CPU, fleet joined, 0 dynos",
        f", {rss_before:.0f} MB before the fleet joined",
    )
    stats = scale_phase(bench)
    with bench.profile("idle, every dyno up", "idle.txt"):
        idle_cpu(bench, "controller idle CPU, every dyno up")
    failover_phase(bench, stats["per_node"])
    fleet_meter.stop()
    result.add(
        "simulated fleet process CPU (whole run)",
        f"{fleet_meter.cpu:.1f} s, peak RSS {fleet_meter.peak_rss / 2**20:.0f} MB,"
        f" {stats['channels']} channels",
    )


def run_size(
    nodes: int, dynos: int, args: argparse.Namespace, profiler: Profiler | CProfiler | None
) -> Result:
    per_app = min(args.per_app, PER_APP_LIMIT)
    apps_count = math.ceil(dynos / per_app)
    quantities = {
        f"bench-{a + 1:03d}": min(per_app, dynos - a * per_app) for a in range(apps_count)
    }
    needed_rpcs = nodes + 2 + 16  # a session per node, the builder's two streams, some API calls
    workers = args.grpc_workers or DEFAULT_GRPC_WORKERS
    result = Result(nodes, dynos, apps_count, workers, profiler is not None)
    print(f"\n== {nodes} nodes x {dynos} dynos ({apps_count} apps x {per_app}) ==", flush=True)
    if workers - RPC_HEADROOM < needed_rpcs:
        result.notes.append(
            f"`waka server --grpc-workers {workers}` allows {workers - RPC_HEADROOM} concurrent"
            f" RPCs: too few for {nodes} sessions + the builder's 2 streams + API calls"
        )
    # Measured first, on a quiet machine: later the controller and the fleet hold the cores.
    policy_seconds, policy_choices = placement_baseline(nodes, apps_count, per_app)
    heap_seconds, heap_choices = placement_with_placer(nodes, apps_count, per_app)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="waka-schedbench-"))
    daemons: list[tuple[subprocess.Popen[bytes], str]] = []
    fleets: list[FleetProcess] = []
    api: Api | None = None
    try:
        controller = start_controller(work, workers, cprofile=isinstance(profiler, CProfiler))
        daemons.append((controller.process, "the controller"))
        api = Api(controller)
        daemons.append((start_builder(work, controller), "the builder agent"))
        run_phases(args, profiler, work, result, quantities, controller, api, fleets)
    except Exception as error:  # a size that fails still reports what it measured
        result.notes.append(f"FAILED: {error}")
        print(f"  ! FAILED: {error}", flush=True)
    finally:
        for fleet in fleets:
            fleet.close()
        if api is not None:
            api.close()
        for process, what in reversed(daemons):
            code = stop_process(process, what)
            if code != 0:
                result.notes.append(f"{what} exited with {code} (see {work})")
        if args.keep:
            print(f"  (kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    # Other work on the machine slows everything here; this says how much there was.
    result.add(
        "machine load average (1 min), before / after",
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f} on {psutil.cpu_count()} cores",
    )
    result.add(
        "BASELINE: the placement policy alone, in-process (NodeLoad per node per dyno)",
        f"{policy_seconds:.2f} s",
    )
    result.add(
        "same placements by the reconciler's Placer (heap per pass; same choices)",
        f"{heap_seconds:.3f} s"
        + ("" if policy_choices == heap_choices else "  ! DIFFERENT CHOICES"),
    )
    return result


# ---------------------------------------------------------------- output


def print_table(results: list[Result]) -> None:
    names: list[str] = []
    for result in results:
        names += [n for n in result.figures if n not in names]
    headers = [f"{r.nodes} nodes x {r.dynos:,} dynos" for r in results]
    print("\n| figure | " + " | ".join(headers) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        cells = [r.figures.get(name, "") for r in results]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for result in results:
        label = f"{result.nodes}x{result.dynos}"
        for note in result.notes:
            print(f"note ({label}): {note}")
        if result.profiled:
            print(f"note ({label}): a profiler was on; its cost slows the controller's figures")
        for phase, lines in result.profiles.items():
            print(f"\nprofile of the controller, {label}, {phase}:")
            print("\n".join(lines))


def parse_size(text: str) -> tuple[int, int]:
    nodes, sep, dynos = text.lower().partition("x")
    if not sep or not nodes.isdigit() or not dynos.isdigit() or int(nodes) < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not NODESxDYNOS, e.g. 200x10000")
    return int(nodes), int(dynos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        type=parse_size,
        action="append",
        help="NODESxDYNOS; repeatable (default: 20x1000 and 200x10000)",
    )
    parser.add_argument("--per-app", type=int, default=PER_APP_LIMIT, help="dynos per app")
    parser.add_argument("--scale-parallel", type=int, default=4, help="scale requests in flight")
    parser.add_argument("--deploy-parallel", type=int, default=4, help="`waka deploy`s at once")
    parser.add_argument(
        "--grpc-workers",
        type=int,
        default=0,
        help=f"`waka server --grpc-workers` (default: the server's, {DEFAULT_GRPC_WORKERS})",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait per phase")
    parser.add_argument(
        "--join-timeout", type=float, default=60, help="seconds for every node to have a session"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before idle figures")
    parser.add_argument(
        "--idle-window", type=float, default=20.0, help="seconds of idle CPU measurement"
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=2.5,
        help="seconds between Nodes.List polls for the silence figures (each poll costs the"
        " controller a count of every dyno by node, read from an index)",
    )
    parser.add_argument(
        "--cprofile", action="store_true", help="run the controller under cProfile, per phase"
    )
    parser.add_argument("--profile", action="store_true", help="attach py-spy to the controller")
    parser.add_argument("--py-spy", default="", help="the py-spy executable")
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument(
        "--profile-all-threads",
        action="store_true",
        help="sample every running thread, not only the GIL holder (shows SQLite's C time;"
        " py-spy falls behind with 200+ threads: lower --profile-rate)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dirs and logs")
    args = parser.parse_args()
    if args.cprofile and (args.profile or args.profile_all_threads):
        sys.exit("--cprofile and --profile: one profiler at a time")
    if os.geteuid() != 0:
        sys.exit("bench/scheduler.py needs root: its builder agent builds in sandboxes")
    profiler: Profiler | CProfiler | None = CProfiler() if args.cprofile else None
    if args.profile or args.profile_all_threads:
        py_spy = find_py_spy(args.py_spy)
        if py_spy is None:
            sys.exit("--profile needs py-spy (pip install py-spy) on PATH or --py-spy PATH")
        profiler = Profiler(py_spy, args.profile_rate, args.profile_all_threads)
    print(
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB,"
        f" Python {sys.version.split()[0]}, grpcio {grpc.__version__}"
    )
    results = [
        run_size(nodes, dynos, args, profiler)
        for nodes, dynos in (args.size or [(20, 1000), (200, 10000)])
    ]
    print_table(results)


if __name__ == "__main__":
    if sys.argv[1:2] == [PROFILED_CONTROLLER]:
        sys.exit(profiled_controller(Path(sys.argv[2]), sys.argv[3:]))
    main()
