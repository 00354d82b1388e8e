"""Dyno start-up cost and host-side footprint, with and without cgroup limits.

    .venv/bin/python bench/dynos.py [--starts N] [--dynos N] [--rounds N] [--only PART ...]

1. Sandbox start overhead: `true` run N times as a plain posix_spawn (the baseline), in a dyno
   sandbox without limits, and in one with limits (its own cgroup in every hierarchy); median ms
   from start() to the command's exit, and of cleanup().
2. On a real `waka up`: a one-line Python web server as the app, `waka ps:scale web=N:mini`, and
   the time until all N dynos are `up`; the baseline is the same N servers started as plain
   processes, until all accept. Then the memory of the waka process (controller + agent) with 0
   and N dynos, and of the host-side processes each dyno costs (bwrap and the sandbox's pid 1),
   as RSS and USS (pages only that process holds).
3. Private networks (`waka features:enable private-network`): `true` by plain fork/exec, in a
   sandbox on the host's network, and in a sandbox in an app's network namespace (nsenter in front
   of bwrap), taking turns; and what the network itself costs: the first dyno of an app on a node
   creates it (netns, veth, routes, the port map entry), the first on the node also the agent's
   nftables table; the last dyno removes it.
4. On a real `waka up`: `ps:scale web=1` to the dyno `up`, for an app on the host's network and an
   app with a private network (whose network is made anew each round), taking turns; and the
   baseline of the same server started as a plain process until it accepts.

Run as root from the repository root. Whether `waka up` puts dynos in cgroups depends on the
agent's wiring; the report says which it found.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import trio
from _harness import Waka, start_waka, wait_for

from waka.agent._netns import PrivateNetworks, agent_tag, kernel_objects
from waka.agent._process import spawn
from waka.agent._sandbox import (
    AppMount,
    Driver,
    NetworkNamespace,
    ResourceLimits,
    SandboxProcess,
    SandboxSpec,
    pick_driver,
)
from waka.v1.common_pb2 import DynoState

UID = 10001
MIB = 1024 * 1024
SERVER = (
    "import os, socket\n"
    "server = socket.create_server(('0.0.0.0', int(os.environ['PORT'])))\n"
    "while True:\n"
    "    connection, _ = server.accept()\n"
    "    connection.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nok\\n')\n"
    "    connection.close()\n"
)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.2f} ms"


# --------------------------------------------------------------------------------------------
# 1. start overhead


def time_plain(null: int) -> float:
    true = shutil.which("true")
    assert true
    started = time.perf_counter()
    pid = spawn([true], env={}, fds={0: null, 1: null, 2: null})
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def true_spec(work: Path) -> SandboxSpec:
    """A dyno running `true` over an empty app dir made in ``work``, with no limits and on the
    host's network. Sections 1 and 3 vary only limits or network on top of it, so their sandbox
    timings stay comparable with each other."""
    app_dir = work / "app"
    app_dir.mkdir()
    os.chown(app_dir, UID, UID)
    return SandboxSpec(
        hostname="web.1",
        argv=["true"],
        env={"PATH": "/usr/bin:/bin"},
        uid=UID,
        app_dir=app_dir,
        app_mount=AppMount.OVERLAY,
    )


def time_sandbox(
    driver: Driver, spec: SandboxSpec, run_dir: Path, null: int
) -> tuple[float, float]:
    """Seconds from start() to the command's exit (sandbox empty), and of cleanup()."""

    async def exited(process: SandboxProcess) -> None:
        await process.wait()
        await process.wait_until_empty()

    started = time.perf_counter()
    process = driver.start(spec, run_dir, stdin=null, stdout=null, stderr=null)
    trio.run(exited, process)
    ran = time.perf_counter() - started
    started = time.perf_counter()
    process.cleanup()
    return ran, time.perf_counter() - started


def start_overhead(runs: int) -> None:
    """The three variants take turns, so that load from elsewhere hits them alike."""
    work = Path(tempfile.mkdtemp(prefix="waka-bench-dynos-"))
    bare_spec = true_spec(work)
    bare_driver = pick_driver(allow_unisolated=False, log=print)
    limited_driver = pick_driver(
        allow_unisolated=False,
        log=print,
        cgroup_parent=f"waka-bench/{os.getpid()}-{secrets.token_hex(3)}",
    )
    limited_spec = dataclasses.replace(
        bare_spec, limits=ResourceLimits(memory_bytes=256 * MIB, max_pids=128, cpu_shares=512)
    )
    plain: list[float] = []
    bare: list[float] = []
    bare_cleanup: list[float] = []
    limited: list[float] = []
    limited_cleanup: list[float] = []
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for run in range(-3, runs):  # three rounds to warm the caches, not counted
            plain_time = time_plain(null)
            bare_times = time_sandbox(bare_driver, bare_spec, work / f"bare-{run}", null)
            limited_times = time_sandbox(limited_driver, limited_spec, work / f"lim-{run}", null)
            if run >= 0:
                plain.append(plain_time)
                bare.append(bare_times[0])
                bare_cleanup.append(bare_times[1])
                limited.append(limited_times[0])
                limited_cleanup.append(limited_times[1])
    finally:
        os.close(null)
        limited_driver.close()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(plain)
    print(f"1. start to exit of `true`, median of {runs} (cleanup separately)")
    print(f"   plain posix_spawn + wait (baseline) {median_ms(plain)}")
    print(
        f"   sandbox, no limits                  {median_ms(bare)}"
        f"  overhead {(statistics.median(bare) - base) * 1000:+.2f} ms"
        f"  cleanup {median_ms(bare_cleanup)}"
    )
    print(
        f"   sandbox + cgroup limits             {median_ms(limited)}"
        f"  overhead {(statistics.median(limited) - base) * 1000:+.2f} ms"
        f"  cleanup {median_ms(limited_cleanup)}"
    )
    print(
        f"   cgroups' own cost (limits - none)   "
        f"{(statistics.median(limited) - statistics.median(bare)) * 1000:+.2f} ms start,"
        f" {(statistics.median(limited_cleanup) - statistics.median(bare_cleanup)) * 1000:+.2f}"
        " ms cleanup"
    )


# --------------------------------------------------------------------------------------------
# 2. a real waka up


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def plain_servers_up(count: int) -> float:
    """Baseline: the same server as plain processes, until all accept."""
    ports = free_ports(count)
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            ["/usr/bin/python3", "-c", SERVER],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        wait_for(lambda: all(accepts(p) for p in ports), 60, "plain servers", interval=0.01)
        return time.monotonic() - started
    finally:
        for process in processes:
            process.kill()
            process.wait()


def count_in(waka: Waka, app: str, state: int) -> int:
    return sum(1 for dyno in waka.dynos(app) if dyno.state == state)


def timed(action: Callable[[], object], done: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    action()
    wait_for(done, 120, what, interval=0.02)
    return time.monotonic() - started


def host_side(waka_pid: int) -> list[psutil.Process]:
    """bwrap and the sandboxes' pid 1: the agent's children named bwrap, and theirs."""
    found = []
    for child in psutil.Process(waka_pid).children():
        if child.name() == "bwrap":
            found.append(child)
            found += [c for c in child.children() if c.name() == "bwrap"]
    return found


def footprint(processes: list[psutil.Process]) -> tuple[float, float]:
    rss = uss = 0
    for process in processes:
        with process.oneshot():
            info = process.memory_full_info()
        rss += info.rss
        uss += info.uss
    return rss / MIB, uss / MIB


def in_cgroups(processes: list[psutil.Process]) -> bool:
    for process in processes[:1]:
        text = Path(f"/proc/{process.pid}/cgroup").read_text()
        return "/waka" in text
    return False


def fleet(dynos: int) -> None:
    waka = start_waka()
    work = Path(tempfile.mkdtemp(prefix="waka-bench-dynos-app-"))
    app = "bench-dynos"
    try:
        (work / "server.py").write_text(SERVER)
        (work / "Procfile").write_text("web: exec /usr/bin/python3 server.py\n")
        waka.cli("apps:create", app)
        waka.cli("deploy", "-a", app, str(work))
        wait_for(lambda: count_in(waka, app, DynoState.DYNO_STATE_UP) == 1, 120, "web.1 up")
        waka.cli("ps:scale", "-a", app, "web=0:mini")
        wait_for(lambda: not waka.dynos(app), 120, "no dyno left")
        time.sleep(1)
        agent = psutil.Process(waka.process.pid)
        idle = footprint([agent])

        up = timed(
            lambda: waka.cli("ps:scale", "-a", app, f"web={dynos}:mini"),
            lambda: count_in(waka, app, DynoState.DYNO_STATE_UP) == dynos,
            f"{dynos} dynos up",
        )
        time.sleep(1)
        busy = footprint([agent])
        helpers = host_side(waka.process.pid)
        helper_rss, helper_uss = footprint(helpers)
        cgroups = in_cgroups(helpers)
        down = timed(
            lambda: waka.cli("ps:scale", "-a", app, "web=0:mini"),
            lambda: not waka.dynos(app),
            "all dynos gone",
        )
    finally:
        waka.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(waka.data_dir.parent, ignore_errors=True)
    baseline = plain_servers_up(dynos)

    print(f"2. waka up, {dynos} web dynos (one-line Python server, size mini)")
    print(f"   dynos run in cgroups: {'yes' if cgroups else 'NO (limits not wired in)'}")
    print(f"   ps:scale web={dynos} -> all up      {up:6.2f} s")
    print(f"   baseline: {dynos} plain servers up  {baseline:6.2f} s")
    print(f"   ps:scale web=0 -> all gone       {down:6.2f} s")
    print(f"   waka process, 0 dynos            RSS {idle[0]:6.1f} MiB  USS {idle[1]:6.1f} MiB")
    print(f"   waka process, {dynos} dynos          RSS {busy[0]:6.1f} MiB  USS {busy[1]:6.1f} MiB")
    print(
        f"   agent growth per dyno            RSS {(busy[0] - idle[0]) / dynos:6.2f} MiB"
        f"  USS {(busy[1] - idle[1]) / dynos:6.2f} MiB"
    )
    print(
        f"   bwrap + pid 1 per dyno ({len(helpers)} procs)  RSS {helper_rss / dynos:6.2f} MiB"
        f"  USS {helper_uss / dynos:6.2f} MiB"
    )
    print(
        "   host-side per dyno (USS: agent growth + bwrap's)"
        f" {((busy[1] - idle[1]) + helper_uss) / dynos:.2f} MiB"
    )


# --------------------------------------------------------------------------------------------
# 3. private networks: sandbox start, and the network's own cost


def timed_call(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def network_overhead(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="waka-bench-netns-"))
    host_spec = true_spec(work)
    tag = agent_tag(work)
    networks = PrivateNetworks(work / "networks", tag=tag, loopback_node=True, log=print)
    driver = pick_driver(allow_unisolated=False, log=print)
    plain: list[float] = []
    host: list[float] = []
    private: list[float] = []
    first_create: list[float] = []
    create: list[float] = []
    destroy: list[float] = []
    last_destroy: list[float] = []
    null = os.open(os.devnull, os.O_RDWR)
    try:
        attachment = networks.attach("bench-web", "00000001", "bench-private", free_ports(1)[0])
        private_spec = dataclasses.replace(
            host_spec,
            network=NetworkNamespace(attachment.network.path, attachment.resolv_conf),
        )
        for run in range(-3, runs):  # three rounds to warm the caches, not counted
            plain_time = time_plain(null)
            host_time, _ = time_sandbox(driver, host_spec, work / f"host-{run}", null)
            private_time, _ = time_sandbox(driver, private_spec, work / f"priv-{run}", null)
            if run >= 0:
                plain.append(plain_time)
                host.append(host_time)
                private.append(private_time)
        networks.detach("bench-web")
        for _ in range(max(runs // 5, 5)):
            # The first network of the node also makes the agent's nftables table; a second
            # app's network is the usual case.
            port = free_ports(1)[0]
            first_create.append(
                timed_call(lambda port=port: networks.attach("a", "0000000a", "bench-a", port))
            )
            create.append(timed_call(lambda: networks.attach("b", "0000000b", "bench-b", None)))
            destroy.append(timed_call(lambda: networks.detach("b")))
            last_destroy.append(timed_call(lambda: networks.detach("a")))
    finally:
        os.close(null)
        for dyno in ("bench-web", "a", "b"):
            networks.detach(dyno)
        shutil.rmtree(work, ignore_errors=True)
    left = kernel_objects(tag)
    base = statistics.median(plain)
    host_ms = statistics.median(host)
    rows = [
        ("plain posix_spawn + wait (baseline)", median_ms(plain)),
        (
            "sandbox, host network",
            f"{median_ms(host)}  overhead {(host_ms - base) * 1000:+.2f} ms",
        ),
        (
            "sandbox, private network (nsenter)",
            f"{median_ms(private)}  overhead {(statistics.median(private) - base) * 1000:+.2f} ms"
            f" (vs host network {(statistics.median(private) - host_ms) * 1000:+.2f} ms)",
        ),
        (f"an app's network made (median of {len(create)})", median_ms(create)),
        ("the node's first (+ the nft table)", median_ms(first_create)),
        ("an app's network removed", median_ms(destroy)),
        ("the node's last (- the nft table)", median_ms(last_destroy)),
    ]
    print(f"3. private networks: start to exit of `true`, median of {runs}")
    for label, value in rows:
        print(f"   {label:<40} {value}")
    print(f"   left behind: {left or 'nothing'}")


# --------------------------------------------------------------------------------------------
# 4. a real waka up: one dyno up, host network vs private network


def plain_server_up() -> float:
    return plain_servers_up(1)


def network_fleet(rounds: int) -> None:
    waka = start_waka()
    work = Path(tempfile.mkdtemp(prefix="waka-bench-netns-app-"))
    apps = {"host": "bench-host-net", "private": "bench-private-net"}
    times: dict[str, list[float]] = {kind: [] for kind in apps}
    try:
        (work / "server.py").write_text(SERVER)
        (work / "Procfile").write_text("web: exec /usr/bin/python3 server.py\n")
        for app in apps.values():
            waka.cli("apps:create", app)
        waka.cli("features:enable", "private-network", "-a", apps["private"])
        for app in apps.values():
            waka.cli("deploy", "-a", app, str(work))
            wait_for(lambda app=app: count_in(waka, app, DynoState.DYNO_STATE_UP) == 1, 120, app)
            waka.cli("ps:scale", "-a", app, "web=0:mini")
            wait_for(lambda app=app: not waka.dynos(app), 120, f"{app}: no dyno left")
        for _ in range(rounds):
            for kind, app in apps.items():
                times[kind].append(
                    timed(
                        lambda app=app: waka.cli("ps:scale", "-a", app, "web=1:mini"),
                        lambda app=app: count_in(waka, app, DynoState.DYNO_STATE_UP) == 1,
                        f"{app} up",
                    )
                )
                waka.cli("ps:scale", "-a", app, "web=0:mini")
                wait_for(lambda app=app: not waka.dynos(app), 120, f"{app}: no dyno left")
    finally:
        waka.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(waka.data_dir.parent, ignore_errors=True)
    baseline = [plain_server_up() for _ in range(rounds)]
    print(f"4. waka up, ps:scale web=1 -> up, median of {rounds} (taking turns)")
    print(f"   host network                     {median_ms(times['host'])}")
    print(f"   private network (made each time) {median_ms(times['private'])}")
    print(f"   baseline: plain server up        {median_ms(baseline)}")


def main() -> None:
    parts = ("start", "fleet", "network", "network-fleet")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=100)
    parser.add_argument("--dynos", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="of part 4")
    parser.add_argument(
        "--only", choices=parts, action="append", help="run only these parts (repeatable)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: sandboxes and cgroups need it")
    only = set(args.only or parts)
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total // MIB} MiB")
    if "start" in only:
        start_overhead(args.starts)
    if "fleet" in only:
        fleet(args.dynos)
    if "network" in only:
        network_overhead(args.starts)
    if "network-fleet" in only:
        network_fleet(args.rounds)


if __name__ == "__main__":
    main()
