"""Many hosts on one machine: a bridge, one network namespace per agent, a real controller.

Every agent runs in its own network namespace with its own address (10.77.N.10+i), wired to a
bridge in the root namespace through a veth pair; the controller (`waka server`) listens on the
bridge's address (10.77.N.1). Faults are then what they are on real hosts: a cut link is the
agent's end of the wire going down, a frozen host is SIGSTOP, a crash is SIGKILL.

Agents enter only the network namespace (`nsenter --net=/run/netns/NS`), not `ip netns exec`:
that one also gives the process a private mount namespace with a fresh sysfs on /sys, which hides
/sys/fs/cgroup (the agent would run without cgroup limits), and puts every restarted agent in a
new mount namespace that cannot see the /app overlays its predecessor mounted. A real host has
one mount namespace that outlives its agent; the root one plays that part here.

Names carry a tag made of the pytest process id and a counter (`wk-<tag>-a1`, `wk-br<tag>`), so
parallel or leftover runs never clash, and teardown removes exactly what this run made: every
process, mount, cgroup, namespace, link and file, also when a test fails.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import grpc
import psutil
import pytest
from conftest import WAKA, Daemon, mounts_under, wait_for

from waka.v1 import common_pb2, platform_pb2, platform_pb2_grpc

PREFIX = "wk"
SUBNET = "10.77"
# The controller's node monitor re-evaluates every node once a second (controller/_nodes.py
# CHECK_INTERVAL); with a margin for the pass itself on a loaded machine.
MONITOR_PASS = 1.5
# Seconds a SIGTERMed daemon gets before it is killed (dynos get --stop-grace 5 of that).
STOP_TIMEOUT = 40
# A dyno printing a numbered line every 50 ms, flushed at once, so gaps and duplicates show.
TICKER = (
    "import itertools, time\n"
    "for n in itertools.count(1):\n"
    "    print(f'tick {n}', flush=True)\n"
    "    time.sleep(0.05)\n"
)
# A web process that listens after a second. Not `python3 -m http.server`: it resolves its own
# name before listening, and a host namespace here has no DNS (20 s of resolver timeouts).
WEB = (
    "import os, socket, time\n"
    "time.sleep(1)\n"
    "server = socket.create_server(('0.0.0.0', int(os.environ['PORT'])))\n"
    "while True:\n"
    "    client, _ = server.accept()\n"
    "    client.recv(65536)\n"
    "    client.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')\n"
    "    client.close()\n"
)
TICK = re.compile(r"^tick (\d+)$")

_counter = itertools.count(1)
T = TypeVar("T")


def run(*argv: str, stdin: str | None = None) -> str:
    """Runs a setup command; fails the test with its output if it fails."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def run_quietly(*argv: str) -> None:
    """Teardown: removes something that may already be gone."""
    subprocess.run(argv, capture_output=True, timeout=30, check=False)


def state_name(state: int) -> str:
    return common_pb2.DynoState.Name(state).removeprefix("DYNO_STATE_").lower()


# --------------------------------------------------------------------------------------------
# The network


@dataclass
class Host:
    """One agent's network namespace and its wire to the bridge."""

    index: int
    netns: str
    veth: str  # the root namespace's end of the pair, enslaved to the bridge
    address: str

    def cut(self) -> None:
        """Unplugs the host: nothing gets through either way and nobody sends a reset; its
        sockets learn of it from timeouts and failed ARP, as with a pulled cable."""
        run("ip", "link", "set", self.veth, "down")

    def restore(self) -> None:
        run("ip", "link", "set", self.veth, "up")

    @property
    def silence_table(self) -> str:
        return f"{self.netns}-silence"  # in the root namespace

    def silence(self) -> None:
        """Drops every packet between the host and the rest, where neither end's own sends
        fail: what the host sends is dropped on arrival in the root namespace, what it is sent
        on arrival in its own. Links and ARP stay up; no socket learns of it but from its own
        timeouts, as behind a dead router."""
        drop = f"ip saddr {self.address} drop;"
        run(
            "nft", "-f", "-",
            stdin=f"table ip {self.silence_table} {{\n"
            f"  chain in {{ type filter hook input priority 0; {drop} }}\n"
            f"  chain relayed {{ type filter hook forward priority 0; {drop} }}\n"
            "}\n",
        )  # fmt: skip
        run(
            "ip", "netns", "exec", self.netns, "nft", "-f", "-",
            stdin="table ip silence {\n"
            "  chain in { type filter hook input priority 0; iifname \"eth0\" drop; }\n"
            "}\n",
        )  # fmt: skip

    def unsilence(self) -> None:
        run("nft", "delete", "table", "ip", self.silence_table)
        run("ip", "netns", "exec", self.netns, "nft", "delete", "table", "ip", "silence")


class Network:
    """A bridge in the root namespace with a /24, and a namespace per host plugged into it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bridge = f"{PREFIX}-br{tag}"
        # Interface names have at most 15 characters (IFNAMSIZ - 1).
        assert len(self.bridge) <= 15 and len(f"{PREFIX}{tag}v99") <= 15, f"tag {tag} too long"
        self.hosts: dict[int, Host] = {}
        self.subnet = 0
        self.gateway = ""

    def create(self) -> None:
        self.subnet = _free_subnet()
        self.gateway = f"{SUBNET}.{self.subnet}.1"
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_host(self, index: int) -> Host:
        netns = f"{PREFIX}-{self.tag}-a{index}"
        veth = f"{PREFIX}{self.tag}v{index}"
        address = f"{SUBNET}.{self.subnet}.{10 + index}"
        host = Host(index, netns, veth, address)
        self.hosts[index] = host  # before anything exists, so teardown covers a failed setup
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        # Web dynos are checked on 127.0.0.1 inside the namespace.
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "route", "add", "default", "via", self.gateway)
        return host

    def destroy(self) -> None:
        for host in self.hosts.values():
            run_quietly("nft", "delete", "table", "ip", host.silence_table)
            run_quietly("ip", "netns", "delete", host.netns)  # takes the peer, so the pair
            run_quietly("ip", "link", "delete", host.veth)
        run_quietly("ip", "link", "delete", self.bridge)

    def leftovers(self) -> list[str]:
        """Anything of this network the kernel still has."""
        names = run("ip", "netns", "list") + run("ip", "-o", "link") + run("nft", "list", "tables")
        tag = re.escape(self.tag)
        mine = re.compile(rf"\b({PREFIX}-br{tag}\b|{PREFIX}-{tag}-a\d|{PREFIX}{tag}v\d)")
        return [line for line in names.splitlines() if mine.search(line)]


def _free_subnet() -> int:
    """A 10.77.N.0/24 no interface of this machine uses (parallel runs pick different ones)."""
    used = set(re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.", run("ip", "-o", "-4", "addr")))
    start = os.getpid() % 250
    for n in range(250):
        candidate = (start + n) % 250 + 1
        if str(candidate) not in used:
            return candidate
    raise AssertionError(f"every {SUBNET}.N.0/24 is in use on this machine")


# --------------------------------------------------------------------------------------------
# The controller's user API, for fast reads (`waka ps --json` is a new process every time)


@dataclass(frozen=True)
class DynoView:
    id: str
    name: str
    type: str
    state: str
    node: str
    release: int
    restarts: int


class Api:
    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self._dynos = platform_pb2_grpc.DynosStub(self.channel)
        self._nodes = platform_pb2_grpc.NodesStub(self.channel)
        self._formation = platform_pb2_grpc.FormationStub(self.channel)
        self.logs = platform_pb2_grpc.LogsStub(self.channel)

    def dynos(self, app: str) -> list[DynoView]:
        reply = self._dynos.List(platform_pb2.AppRef(app=app), metadata=self.metadata, timeout=10)
        return [
            DynoView(d.id, d.name, d.type, state_name(d.state), d.node, d.release, d.restarts)
            for d in reply.dynos
        ]

    def nodes(self) -> dict[str, platform_pb2.Node]:
        reply = self._nodes.List(platform_pb2.Empty(), metadata=self.metadata, timeout=10)
        return {node.name: node for node in reply.nodes}

    def scale(self, app: str, **quantities: int) -> None:
        """`waka ps:scale` without starting a process: for when the moment matters."""
        changes = [
            platform_pb2.ScaleChange(type=ptype, quantity=count, has_quantity=True)
            for ptype, count in quantities.items()
        ]
        request = platform_pb2.ScaleRequest(app=app, changes=changes)
        self._formation.Scale(request, metadata=self.metadata, timeout=30)

    def close(self) -> None:
        self.channel.close()


class LogTail:
    """`waka logs -t` in a thread: every line of an app (optionally one source and dyno)."""

    def __init__(self, api: Api, app: str, *, source: str = "", dyno: str = "") -> None:
        self.lines: list[common_pb2.LogLine] = []
        self._lock = threading.Lock()
        request = platform_pb2.TailRequest(app=app, num=1, follow=True, source=source, dyno=dyno)
        self._call = api.logs.Tail(request, metadata=api.metadata)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for batch in self._call:
                with self._lock:
                    self.lines.extend(batch.lines)
        except grpc.RpcError:
            pass  # cancelled at close, or the controller went away

    def texts(self, dyno: str | None = None) -> list[str]:
        with self._lock:
            return [line.text for line in self.lines if dyno is None or line.dyno == dyno]

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(10)


@dataclass(frozen=True)
class TickReport:
    first: int
    last: int
    gaps: list[int]  # numbers that never arrived
    duplicates: list[int]  # numbers that arrived more than once
    most_copies: int  # of any one number


def tick_report(texts: list[str]) -> TickReport:
    numbers = [int(m[1]) for m in map(TICK.match, texts) if m]
    assert numbers, "no tick line arrived at all"
    seen: dict[int, int] = {}
    for number in numbers:
        seen[number] = seen.get(number, 0) + 1
    first, last = min(numbers), max(numbers)
    return TickReport(
        first=first,
        last=last,
        gaps=[n for n in range(first, last + 1) if n not in seen],
        duplicates=sorted(n for n, count in seen.items() if count > 1),
        most_copies=max(seen.values()),
    )


class Sampler(Generic[T]):
    """Calls `probe` every `interval` seconds in a thread until closed, keeping every result: what
    happens during a fault is seen as it happens, not only once it is over."""

    def __init__(self, probe: Callable[[], T], interval: float = 0.1) -> None:
        self.samples: list[tuple[float, T]] = []
        self.errors: list[BaseException] = []
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._probe()))
            except Exception as error:  # e.g. the controller is restarting: keep sampling
                self.errors.append(error)
            self._stop.wait(self._interval)

    def close(self) -> list[tuple[float, T]]:
        self._stop.set()
        self._thread.join(30)
        return self.samples


# --------------------------------------------------------------------------------------------
# Processes


def _append_log(path: Path, banner: str) -> int:
    """Opens a daemon's log for appending (restarts add to it); returns where this run starts."""
    with path.open("ab") as f:
        f.write(f"\n===== {banner} at {time.strftime('%H:%M:%S')} =====\n".encode())
        return f.tell()


@functools.cache
def _server_has_agent_port() -> bool:
    """Whether `waka server` serves agents on a port of their own (mutual TLS), which must
    then listen on the bridge too (its default is loopback, unreachable from other hosts)."""
    usage = subprocess.run([WAKA, "server", "--help"], capture_output=True, text=True, timeout=60)
    return "--agent-api" in usage.stdout


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, the way users stop a daemon, then waits for it (see _wait)."""
    send_signal(process, signal.SIGCONT)  # a frozen daemon cannot act on SIGTERM
    send_signal(process, signal.SIGTERM)
    return wait_stopped(process)


def wait_stopped(process: subprocess.Popen[bytes]) -> int:
    """Waits for a signalled daemon (never signalling it again: a second SIGTERM means "exit at
    once"); one that does not stop in time is killed, and the caller learns it from the -9."""
    try:
        return process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def send_signal(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Signals a daemon unless it is gone already."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


def _processes_holding(root: Path) -> list[psutil.Process]:
    """Dynos outlive their agent, so they are found by what they hold: their stdout is their
    output file under the agent's data dir (bubblewrap, its init and the command alike)."""
    prefix = f"{root}/"
    found = []
    for pid in psutil.pids():
        for link in (f"/proc/{pid}/fd/1", f"/proc/{pid}/cwd"):
            try:
                if os.readlink(link).startswith(prefix):
                    found.append(psutil.Process(pid))
                    break
            except (OSError, psutil.Error):
                continue
    return found


def _cgroup_dirs(data_dir: Path) -> list[Path]:
    """The agent's cgroup parent in every hierarchy (v1 and hybrid: one per controller; v2: the
    one tree). Same rule as the agent's own (waka.agent._cgroups.agent_cgroup_parent): `waka/`
    and 12 hex digits of the sha256 of its data dir."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    root = Path("/sys/fs/cgroup")
    found = [*root.glob(f"*/waka/{digest}"), *root.glob(f"waka/{digest}")]
    return [d for d in found if d.is_dir()]


def _remove_cgroup_tree(top: Path) -> None:
    # Deepest first: a cgroup can only be removed once its children are.
    for directory in [*sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True), top]:
        procs = directory / "cgroup.procs"
        try:
            for pid in procs.read_text().split():
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


@dataclass
class Agent:
    """`waka agent` on one host, restartable with the same data dir."""

    name: str
    host: Host
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_start: int = 0
    starts: int = 0
    # More `waka agent` options, given at every start.
    options: tuple[str, ...] = ()

    def start(self, controller: str, token: str = "") -> None:
        self.starts += 1
        self.log_start = _append_log(self.log_path, f"agent start #{self.starts}")
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.host.netns}",
            WAKA,
            "agent",
            "--controller",
            controller,
            "--data-dir",
            str(self.data_dir),
            "--name",
            self.name,
            "--address",
            self.host.address,
        ]
        if token:
            argv += ["--token", token]
        self.process = _spawn([*argv, *self.options], self.log_path)

    def log(self, *, since_start: bool = False) -> str:
        return _read_from(self.log_path, self.log_start if since_start else 0)

    def wait_running(self, timeout: float = 60) -> None:
        def running() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.log(since_start=True)}"
                )
            return f"agent {self.name} running" in self.log(since_start=True)

        wait_for(running, timeout, f"{self.name} to run")

    def exited(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def terminate(self) -> int:
        assert self.process is not None
        return _stop(self.process)

    def dyno_processes(self) -> dict[str, dict[int, float]]:
        """What runs of each dyno this agent started: dyno id -> {pid: start time}."""
        root = self.data_dir / "dynos"
        found: dict[str, dict[int, float]] = {}
        for proc in _processes_holding(root):
            try:
                link = os.readlink(f"/proc/{proc.pid}/fd/1")
                started = proc.create_time()
            except (OSError, psutil.Error):
                continue
            if not link.startswith(f"{root}/"):
                continue
            dyno_id = link[len(str(root)) + 1 :].split("/")[0]
            found.setdefault(dyno_id, {})[proc.pid] = started
        return found

    def credential_channel(self, controller: str) -> tuple[grpc.Channel, tuple]:
        """A channel to the agent API that presents this node's own credential (the bearer
        secret of older agents, or the certificate a mutual-TLS agent holds), with the metadata
        to send on each call."""
        identity = json.loads((self.data_dir / "node.json").read_text())
        if "secret" in identity:
            channel = grpc.insecure_channel(controller)
            return channel, (("authorization", f"Bearer {identity['secret']}"),)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(self.data_dir / "ca.crt").read_bytes(),
            private_key=(self.data_dir / "node.key").read_bytes(),
            certificate_chain=(self.data_dir / "node.crt").read_bytes(),
        )
        host, _, port = identity["endpoint"].rpartition(":")
        if host.strip("[]") in {"0.0.0.0", "::", ""}:
            host = controller.rpartition(":")[0]
        # The agent port's certificate names the controller, not an address (agent/_wire.py).
        options = [("grpc.ssl_target_name_override", "waka-controller")]
        return grpc.secure_channel(f"{host}:{port}", credentials, options=options), ()


@dataclass
class Cluster:
    """A controller and agents on their own hosts; see the module docstring."""

    root: Path
    tag: str
    network: Network
    server: Daemon | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    api: Api | None = None
    server_starts: int = 0
    _addresses: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ the controller

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def controller(self) -> str:
        return self._addresses["api"]

    def join_token(self) -> str:
        return (self.server_dir / "join-token").read_text().strip()

    def start_server(self) -> Daemon:
        """Starts `waka server`; a restart binds the same ports, so agents find it again."""
        self.server_starts += 1
        gateway = self.network.gateway
        api = self._addresses.get("api", f"{gateway}:0")
        http = self._addresses.get("http", f"{gateway}:0")
        router = self._addresses.get("router", f"{gateway}:0")
        agent_api = self._addresses.get("agent_api", f"{gateway}:0")
        (self.server_dir / "controller.json").unlink(missing_ok=True)
        self.server_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "server.log"
        start = _append_log(log_path, f"server start #{self.server_starts}")
        argv = [WAKA, "server", "--data-dir", str(self.server_dir), "--api", api]
        argv += ["--http", http, "--router", router, "--stop-grace", "5"]
        if _server_has_agent_port():
            argv += ["--agent-api", agent_api]
        daemon = Daemon(_spawn(argv, log_path), self.server_dir, log_path)
        self.server = daemon

        def ready() -> bool:
            if daemon.process.poll() is not None:
                raise AssertionError(f"waka server exited:\n{_read_from(log_path, start)}")
            info = json.loads((self.server_dir / "controller.json").read_text())
            daemon.api, daemon.http, daemon.router = info["api"], info["http"], info["router"]
            self._addresses = info
            return "waka controller is up" in _read_from(log_path, start)

        wait_for(ready, 60, "the controller to serve")
        if self.api is None:
            token = (self.server_dir / "admin-token").read_text().strip()
            self.api = Api(daemon.api, token)
        return daemon

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.process.kill()
        self.server.process.wait()

    def stop_server(self) -> int:
        assert self.server is not None
        return _stop(self.server.process)

    def waka(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.server is not None
        result = self.server.waka(*args, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"waka {' '.join(args)} exited {result.returncode}\n{result.stdout}"
                f"{result.stderr}\n{self.logs_for_failure()}"
            )
        return result

    def logs_for_failure(self, chars: int = 3000) -> str:
        """The end of the controller's log and of every agent's, to explain a failure."""
        parts = [self.server_log_tail(chars)]
        for agent in self.agents.values():
            exited = agent.process.poll() if agent.process is not None else None
            parts.append(
                f"--- {agent.name} (exit status {exited}) log (end) ---\n{agent.log()[-chars:]}"
            )
        return "\n".join(parts)

    # ------------------------------------------------------------ agents

    def add_agent(
        self, *, token: str | None = None, wait: bool = True, options: tuple[str, ...] = ()
    ) -> Agent:
        index = len(self.agents) + 1
        name = f"agent-{index}"
        host = self.network.add_host(index)
        agent = Agent(name, host, self.root / name, self.root / f"{name}.log", options=options)
        self.agents[name] = agent
        agent.start(self.controller, self.join_token() if token is None else token)
        if wait:
            try:
                agent.wait_running()
                self.wait_node(name, "ready")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{self.server_log_tail()}") from None
        return agent

    def server_log_tail(self, chars: int = 4000) -> str:
        log = (self.root / "server.log").read_text(errors="replace")
        return f"--- the controller's log (end) ---\n{log[-chars:]}"

    def restart_agent(self, agent: Agent) -> None:
        agent.start(self.controller)
        agent.wait_running()

    def nodes(self) -> dict[str, platform_pb2.Node]:
        assert self.api is not None
        return self.api.nodes()

    def wait_node(self, name: str, state: str, timeout: float = 60, interval: float = 0.1) -> float:
        """Waits until `waka nodes` shows the node in `state`; returns when (monotonic)."""

        def reached() -> bool:
            node = self.nodes().get(name)
            return node is not None and node.state == state

        wait_for(reached, timeout, f"node {name} to be {state}", interval=interval)
        return time.monotonic()

    # ------------------------------------------------------------ apps

    def create_ticker_app(self, app: str, *, web: bool = False) -> None:
        """An app whose `worker` prints `tick N` every 50 ms; deployed, not yet scaled. With
        `web`, also a web process that takes a second to listen (so `up` means booted)."""
        source = self.root / "apps" / app
        source.mkdir(parents=True)
        procfile = "worker: exec python3 -u ticker.py\n"
        if web:
            procfile += "web: exec python3 -u web.py\n"
            (source / "web.py").write_text(WEB)
        (source / "Procfile").write_text(procfile)
        (source / "ticker.py").write_text(TICKER)
        self.waka("apps:create", app, "--no-remote")
        deployed = self.waka("deploy", "-a", app, str(source), check=False)
        if "the builder node disconnected" in deployed.stdout + deployed.stderr:
            # Setup, not what these tests check; but seen once in a full run, cause unknown yet:
            # say so loudly, with the logs, and build again.
            warnings.warn(
                f"the builder node disconnected while {app} built:\n{self.logs_for_failure()}",
                stacklevel=2,
            )
            deployed = self.waka("deploy", "-a", app, str(source), check=False)
        if deployed.returncode != 0:
            raise AssertionError(
                f"waka deploy -a {app} exited {deployed.returncode}\n{deployed.stdout}"
                f"{deployed.stderr}\n{self.logs_for_failure()}"
            )

    def scale(self, app: str, **quantities: int) -> None:
        changes = [f"{ptype}={count}" for ptype, count in quantities.items()]
        self.waka("ps:scale", *changes, "-a", app)

    def dynos(self, app: str) -> list[DynoView]:
        assert self.api is not None
        return self.api.dynos(app)

    def running(self) -> dict[str, str]:
        """What actually runs, from the hosts' process tables: dyno id -> agent name."""
        return {
            dyno_id: agent.name
            for agent in self.agents.values()
            for dyno_id in agent.dyno_processes()
        }

    def wait_converged(self, app: str, ptype: str, count: int, timeout: float = 90) -> None:
        """Until `waka ps` shows exactly `count` dynos of the type, all up, one per slot, and the
        hosts run exactly those (nothing extra anywhere)."""

        def converged() -> bool:
            dynos = [d for d in self.dynos(app) if d.type == ptype]
            names = sorted(d.name for d in dynos)
            if names != sorted(f"{ptype}.{i}" for i in range(1, count + 1)):
                return False
            if any(d.state != "up" for d in dynos):
                return False
            return set(self.running()) == {d.id for d in dynos}

        try:
            wait_for(converged, timeout, f"{app} to run exactly {count} {ptype} dynos", 0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.describe(app)}") from None

    def up_slots(self, app: str, ptype: str) -> set[str]:
        return {d.name for d in self.dynos(app) if d.type == ptype and d.state == "up"}

    def describe(self, app: str) -> str:
        """What `waka ps`, `waka nodes` and the hosts say, for failure messages."""
        lines = ["waka ps:"]
        try:
            lines += [f"  {d}" for d in self.dynos(app)]
            lines.append("waka nodes:")
            lines += [f"  {n.name} {n.state} dynos={n.dynos}" for n in self.nodes().values()]
        except grpc.RpcError as error:
            lines.append(f"  (controller unreachable: {error.details()})")
        lines.append("running on the hosts:")
        lines += [f"  {k} on {v}" for k, v in sorted(self.running().items())]
        return "\n".join(lines)

    # ------------------------------------------------------------ teardown

    def destroy(self) -> list[str]:
        """Stops everything this cluster started and removes every trace; returns what was
        still there afterwards (empty when teardown was complete)."""
        problems: list[str] = []
        for agent in self.agents.values():
            send_signal(agent.process, signal.SIGCONT)
        for host in self.network.hosts.values():
            run_quietly("ip", "link", "set", host.veth, "up")
        # Agents stop their dynos on SIGTERM; all of them at once, each within the grace.
        running = [a for a in self.agents.values() if a.process and a.process.poll() is None]
        for agent in running:
            send_signal(agent.process, signal.SIGTERM)
        for agent in running:
            assert agent.process is not None
            # (An agent that was already dying of a failure a test reports may exit otherwise.)
            if wait_stopped(agent.process) == 0 and (strays := _processes_holding(agent.data_dir)):
                problems.append(f"{agent.name} stopped, its dynos did not: {strays}")
        if self.api is not None:
            self.api.close()
        server = self.server.process if self.server is not None else None
        if server is not None and server.poll() is None and (code := _stop(server)) != 0:
            problems.append(f"the controller exited {code} on SIGTERM")
        # Then whatever is left, whoever left it (e.g. an agent a test killed for good).
        for agent in self.agents.values():
            for _ in range(3):
                strays = _processes_holding(agent.data_dir)
                if not strays:
                    break
                for proc in strays:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                psutil.wait_procs(strays, timeout=5)
            for top in _cgroup_dirs(agent.data_dir):
                _remove_cgroup_tree(top)
        for mount in reversed(mounts_under(self.root)):
            run_quietly("umount", "-l", mount)
        self.network.destroy()
        for agent in self.agents.values():
            if strays := _processes_holding(agent.data_dir):
                problems.append(f"processes of {agent.name}: {[p.pid for p in strays]}")
            if cgroups := _cgroup_dirs(agent.data_dir):
                problems.append(f"cgroups of {agent.name}: {cgroups}")
        if mounts := mounts_under(self.root):
            problems.append(f"mounts: {mounts}")
        if leftovers := self.network.leftovers():
            problems.append(f"namespaces or links: {leftovers}")
        return problems


@contextlib.contextmanager
def open_cluster(parent: Path) -> Iterator[Cluster]:
    """A controller on a fresh bridge, no agents yet. Afterwards, also when something failed,
    everything is stopped and removed, and teardown fails if anything of it is left."""
    # The pid in hex, then the counter: `x` keeps pid 0x2cd4 #12 apart from 0x2cd41 #2.
    tag = f"{os.getpid():x}x{next(_counter)}"
    root = parent / f"fleet-{tag}"
    root.mkdir(parents=True)
    cluster = Cluster(root, tag, Network(tag))
    try:
        cluster.network.create()
        cluster.start_server()
        yield cluster
    except BaseException:
        cluster.destroy()
        _rmtree(root)
        raise
    problems = cluster.destroy()
    _rmtree(root)
    assert not problems, f"teardown left things behind: {problems}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own for one test."""
    with open_cluster(tmp_path) as c:
        yield c


def _rmtree(path: Path) -> None:
    # Slugs and dyno layers belong to the apps' uids and are partly read-only; rm -rf as root
    # removes them, and --one-file-system never follows into a mount teardown could not remove.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, timeout=60)
