"""Private networks: one network namespace per app per node, for apps with the private-network
feature (`waka features:enable private-network`).

What a dyno of such an app sees: loopback, and `eth0` with an address of its own out of a /30 from
10.213.0.0/16 (the host end of the veth pair holds the other address and is the default route).
The app's dynos on the node share the namespace, so they reach each other (a worker reaches a web
dyno at 127.0.0.1:$PORT); another app's dynos do not reach its loopback, which is per namespace.
Outbound traffic is masqueraded behind the host's address; DNS uses the host's /etc/resolv.conf,
or, when the host's nameservers are on loopback (systemd-resolved), its upstream servers.

On a node whose address is loopback (`waka up`), the host's services (add-ons: dynos with a fixed
port on the host's network, whose URLs name 127.0.0.1) are reached at 127.0.0.1:PORT from inside
the namespace too, as from the host: the namespace's own table `ip waka-services` DNATs those
ports to the host end of the veth (where the services listen, on every address) and gives the
packets the namespace's address (`route_localnet` on its eth0 lets a loopback-addressed packet be
routed at all). Only those ports: the rest of the host's loopback stays out of reach.

Inbound, a dyno with $PORT is reached:
- from this host at NETNS_IP:$PORT (the host routes each /30 to its veth). A node whose address is
  loopback reports that address (`DynoStatus.address`): the controller and its router are here.
- at any other local address of the host, on the same port: the agent's nftables table maps the
  port to the namespace's address (DNAT in prerouting and output), an entry added when the dyno
  starts and removed when it ends. That is the address a node with a real address reports.

Kernel objects, named after the agent (TAG: 5 hex from its data dir, so agents sharing a host never
touch each other's) and the app (APP8: the first 8 hex of its id), KEY = TAG + APP8:
- netns `waka-KEY` (/run/netns/waka-KEY), veth `wkKEY` on the host and `eth0` inside;
- table `ip waka-TAG`: the port map, masquerading, forward rules; while any network of the agent
  exists.
State: `<agent data dir>/networks/KEY.json` (app, subnet), written before the kernel objects and
removed after them, so that a crash halfway leaves something to clean up.

Life: a network is created when the first dyno of its app starts on the node and destroyed when the
last one is gone (its sandbox cleaned up). Dynos outlive the agent, and so do their networks: a
restarted agent adopts (restore()) the networks its restored dynos use, from the state files and
without touching them, and removes any other of its own.

Forwarding: packets from a namespace are forwarded by the host, so `forwarding` is switched on for
each host-side veth, and for the interfaces of the host's default routes where it was off (replies
to masqueraded traffic, and DNAT'd traffic from other hosts, arrive there). Never `ip_forward` for
all: for an uplink switched on here, a rule drops whatever arrives on it for anything but a waka
veth, so the host forwards nothing it did not before. Which uplinks were switched, and which agents
hold them, is kept host-wide under /run/waka-network (with the lock that serialises creation among
agents); the last holder to go switches them back off. Forwarding between two waka veths is
refused unless DNAT'd: apps reach each other's published ports through the host, as on the host
network, and nothing else of each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Final

POOL: Final = IPv4Network("10.213.0.0/16")
PREFIX: Final = 30
NETNS_DIR: Final = Path("/run/netns")
HOST_DIR: Final = Path("/run/waka-network")  # host-wide: the lock, and forwarding holders
NS_INTERFACE: Final = "eth0"
SERVICES_TABLE: Final = "waka-services"  # inside each namespace of a loopback node
RESOLV_CONF: Final = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM: Final = Path("/run/systemd/resolve/resolv.conf")
_TOOL_PATH: Final = "/usr/sbin:/usr/bin:/sbin:/bin"
_TAG = re.compile(r"^[0-9a-f]{5}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9._@-]{1,15}$")
_LOOPBACK_NETWORK: Final = IPv4Network("127.0.0.0/8")


class NetworkError(Exception):
    """A private network could not be set up or taken down; the message says why."""


# --------------------------------------------------------------------------------------------
# Names and addresses (pure)


def agent_tag(data_dir: Path) -> str:
    """5 hex, stable across the agent's restarts and distinct for agents sharing a host."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:5]


def network_key(tag: str, app_id: str) -> str:
    """TAG + the first 8 hex of the app id (hashed when the id is not hex): 13 characters, so
    that `wk` + KEY fits an interface name (15)."""
    if not _TAG.match(tag):
        raise ValueError(f"agent tag {tag!r} is not 5 hex digits")
    if not app_id:
        raise ValueError("a private network needs the app's id")
    short = app_id[:8].lower()
    if not re.fullmatch(r"[0-9a-f]{8}", short):
        short = hashlib.sha256(app_id.encode()).hexdigest()[:8]
    return tag + short


def netns_name(key: str) -> str:
    return f"waka-{key}"


def host_veth(key: str) -> str:
    return f"wk{key}"


def table_name(tag: str) -> str:
    return f"waka-{tag}"


def choose_subnet(
    used: Iterable[IPv4Network], pool: IPv4Network = POOL, prefix: int = PREFIX
) -> IPv4Network:
    """The first /30 of the pool that overlaps nothing the host routes already (other networks,
    other agents' veths, the LAN if it happens to lie in the pool)."""
    taken = [n for n in used if n.prefixlen > 0 and n.overlaps(pool)]
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(n) for n in taken):
            return candidate
    raise NetworkError(f"no free /{prefix} left in {pool} for a private network")


def routed_networks(routes: Sequence[dict]) -> list[IPv4Network]:
    """The destinations of `ip -j -4 route show table all` (default routes left out)."""
    found = []
    for route in routes:
        dst = route.get("dst", "")
        if not dst or dst == "default":
            continue
        with contextlib.suppress(ValueError):
            found.append(IPv4Network(dst, strict=False))
    return found


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def netns_resolv_conf(host: str, upstream: str | None) -> str | None:
    """The /etc/resolv.conf a private network's dynos get instead of the host's, or None when the
    host's works from a namespace as it is. Nameservers on loopback (systemd-resolved's
    127.0.0.53, a local dnsmasq) are the host's own, unreachable from another namespace: they are
    replaced by the upstream file's (systemd-resolved's resolv.conf) non-loopback ones."""
    lines = host.splitlines()
    servers = [line.split()[1] for line in lines if _nameserver(line)]
    if not any(_is_loopback(server) for server in servers):
        return None
    kept = [line for line in lines if not (_nameserver(line) and _is_loopback(line.split()[1]))]
    if not any(_nameserver(line) for line in kept):
        upstream_servers = [
            line.split()[1]
            for line in (upstream or "").splitlines()
            if _nameserver(line) and not _is_loopback(line.split()[1])
        ]
        if not upstream_servers:
            return None  # nothing reachable to offer; the host's file at least says what it is
        kept += [f"nameserver {server}" for server in upstream_servers]
    return (
        "# waka private network: the host's resolvers, less those on loopback\n"
        + "\n".join(kept)
        + "\n"
    )


def _nameserver(line: str) -> bool:
    parts = line.split()
    return len(parts) >= 2 and parts[0] == "nameserver"


# --------------------------------------------------------------------------------------------
# nftables (pure)


def render_table(tag: str, guarded_uplinks: Sequence[str] = ()) -> str:
    """The agent's table, as an `nft -f` script: the port map and its DNAT rules, masquerading of
    what leaves the agent's namespaces, and the forward rules (see the module docstring)."""
    table, veths = table_name(tag), f"wk{tag}*"
    for uplink in guarded_uplinks:
        if not _INTERFACE.match(uplink):
            raise ValueError(f"interface name {uplink!r} cannot go into a rule")
    refuse = "ct status & dnat == 0 reject with icmp type admin-prohibited"
    return "\n".join(
        [
            f"table ip {table} {{",
            "  map ports {",
            "    type inet_service : ipv4_addr",
            "  }",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            "    fib daddr type local dnat to tcp dport map @ports",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            # Loopback cannot be DNAT'd elsewhere (without route_localnet, which stays off).
            "    ip daddr != 127.0.0.0/8 fib daddr type local dnat to tcp dport map @ports",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    iifname "{veths}" oifname != "wk*" masquerade',
            "  }",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f'    iifname "{veths}" oifname "wk*" {refuse}',
            f'    iifname "wk*" oifname "{veths}" {refuse}',
            *(f'    iifname "{uplink}" oifname != "wk*" drop' for uplink in guarded_uplinks),
            "  }",
            "}",
            "",
        ]
    )


def render_ports(
    tag: str, add: Iterable[tuple[int, IPv4Address]] = (), remove: Iterable[int] = ()
) -> str:
    """An `nft -f` script that adds and removes port map entries (port -> namespace address)."""
    table = table_name(tag)
    lines = [f"delete element ip {table} ports {{ {int(port)} }}" for port in remove]
    lines += [f"add element ip {table} ports {{ {int(port)} : {ip} }}" for port, ip in add]
    return "\n".join(lines) + "\n"


def render_host_services(ns_ip: IPv4Address, host_ip: IPv4Address, ports: Iterable[int]) -> str:
    """An `nft -f` script for inside a namespace: 127.0.0.1:PORT for each port goes to `host_ip`
    with the namespace's address as its source. Replaces whatever the namespace had (an empty
    `ports` removes the table), in one transaction."""
    table = SERVICES_TABLE
    lines = [f"add table ip {table}", f"delete table ip {table}"]
    wanted = sorted({int(port) for port in ports})
    if wanted:
        lines += [
            f"table ip {table} {{",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            f"    ip daddr 127.0.0.1 tcp dport {{ {', '.join(map(str, wanted))} }}"
            f" dnat to {host_ip}",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    oifname "{NS_INTERFACE}" ip saddr 127.0.0.0/8 snat to {ns_ip}',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Networks


@dataclass(frozen=True)
class Network:
    key: str
    app: str
    subnet: IPv4Network

    @property
    def name(self) -> str:
        return netns_name(self.key)

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def veth(self) -> str:
        return host_veth(self.key)

    @property
    def host_ip(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def ns_ip(self) -> IPv4Address:
        return self.subnet.network_address + 2

    def to_record(self) -> dict[str, str]:
        return {"key": self.key, "app": self.app, "subnet": str(self.subnet)}

    @classmethod
    def from_record(cls, record: dict) -> Network:
        return cls(str(record["key"]), str(record["app"]), IPv4Network(record["subnet"]))


@dataclass(frozen=True)
class Attachment:
    """What a dyno's sandbox needs of its network."""

    network: Network
    port: int | None  # the dyno's $PORT, mapped from the host's addresses; None without one
    resolv_conf: Path | None  # bound over /etc/resolv.conf when the host's cannot serve


Runner = Callable[[Sequence[str], str | None], str]


def run_tool(argv: Sequence[str], stdin: str | None = None) -> str:
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env={"PATH": _TOOL_PATH, "LC_ALL": "C"},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetworkError(f"{argv[0]} failed: {error}") from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        raise NetworkError(f"`{' '.join(argv[:4])}` failed: {detail}")
    return result.stdout


def missing_tools() -> list[str]:
    """What private networks need and this host lacks (as apt-get hints)."""
    needed = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux"}
    return [
        f"{tool} (apt-get install {package})"
        for tool, package in needed.items()
        if shutil.which(tool, path=_TOOL_PATH) is None
    ]


class PrivateNetworks:
    """The agent's private networks. Blocking methods (they run ip and nft): call them from a
    worker thread. Thread-safe."""

    def __init__(
        self,
        state_dir: Path,
        *,
        tag: str,
        loopback_node: bool,
        host_dir: Path = HOST_DIR,
        run: Runner = run_tool,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        if not _TAG.match(tag):
            raise ValueError(f"agent tag {tag!r} is not 5 hex digits")
        self.state_dir = state_dir
        self.tag = tag
        self.loopback_node = loopback_node
        self._host_dir = host_dir
        self._run = run
        self._log = log
        self._lock = threading.Lock()
        self._networks: dict[str, Network] = {}
        self._attached: dict[str, tuple[str, int | None]] = {}  # dyno id -> (key, port)
        self._resolv_conf: Path | None = None
        self._host_depth = 0
        # Loopback node: the host services' ports every namespace reaches (None: not told yet).
        self._host_services: frozenset[int] | None = None

    @classmethod
    def for_agent(
        cls, data_dir: Path, advertised: str, log: Callable[[str], None]
    ) -> PrivateNetworks:
        return cls(
            data_dir / "networks",
            tag=agent_tag(data_dir),
            loopback_node=advertised in {"localhost", ""} or _is_loopback(advertised),
            log=log,
        )

    # ------------------------------------------------------------ dynos

    def attach(self, dyno_id: str, app_id: str, app: str, port: int | None) -> Attachment:
        """The dyno's network, created if it is the first of its app here; its port mapped.
        Idempotent: a dyno restarting after a crash gets what it had."""
        with self._lock:
            key = network_key(self.tag, app_id)
            known = self._attached.get(dyno_id)
            if known is not None and known[0] == key and key in self._networks:
                return self._attachment(self._networks[key], known[1])
            network = self._networks.get(key)
            if network is None:
                network = self._create(key, app)
            if port is not None:
                try:
                    self._nft(render_ports(self.tag, add=[(port, network.ns_ip)]))
                except NetworkError:
                    if not any(k == key for k, _ in self._attached.values()):
                        self._destroy(network)
                    raise
            self._attached[dyno_id] = (key, port)
            return self._attachment(network, port)

    def detach(self, dyno_id: str) -> None:
        """The dyno is gone (its sandbox cleaned up): unmap its port, and remove its app's
        network if no other dyno of the app uses it here."""
        with self._lock:
            attached = self._attached.pop(dyno_id, None)
            if attached is None:
                return
            key, port = attached
            if port is not None:
                try:
                    self._nft(render_ports(self.tag, remove=[port]))
                except NetworkError as error:
                    self._log(f"private network: cannot unmap port {port}: {error}")
            network = self._networks.get(key)
            if network is not None and not any(k == key for k, _ in self._attached.values()):
                self._destroy(network)

    def attachment(self, dyno_id: str) -> Attachment | None:
        """The dyno's attachment, if any. No lock (single dict reads): the event loop asks this
        while a worker thread may hold the lock creating a network."""
        known = self._attached.get(dyno_id)
        network = self._networks.get(known[0]) if known is not None else None
        if known is None or network is None:
            return None
        return self._attachment(network, known[1])

    def dial_address(self, attachment: Attachment) -> str:
        """What the dyno reports as its address: the namespace's, when the node's address is
        loopback (only this host can reach it, and it reaches the namespace directly); otherwise
        empty (the node's address and the port, through the DNAT entry)."""
        if not self.loopback_node or attachment.port is None:
            return ""
        return f"{attachment.network.ns_ip}:{attachment.port}"

    def networks(self) -> list[Network]:
        with self._lock:
            return list(self._networks.values())

    def set_host_services(self, ports: Iterable[int]) -> None:
        """The ports of the host-network services on this node (add-ons). On a loopback node,
        every namespace, present and future, reaches them at 127.0.0.1:PORT; elsewhere their URLs
        name the node's address, which namespaces reach anyway, and this does nothing. Blocking
        (nft in each namespace); a namespace that cannot be updated is logged and skipped."""
        if not self.loopback_node:
            return
        with self._lock:
            wanted = frozenset(ports)
            if wanted == self._host_services:
                return
            self._host_services = wanted
            for network in self._networks.values():
                try:
                    self._install_host_services(network)
                except NetworkError as error:
                    self._log(f"private network {network.name}: host services: {error}")

    def _attachment(self, network: Network, port: int | None) -> Attachment:
        return Attachment(network, port, self._resolv_conf)

    # ------------------------------------------------------------ agent start

    def restore(self, users: Iterable[tuple[str, str, int | None]]) -> list[str]:
        """At agent start, before any dyno starts: adopt the networks of the restored dynos
        (dyno id, app id, port) as they are, and remove every other network of this agent (a
        crash, or dynos that ended while no agent ran). Returns what was removed."""
        with self._lock, self._host_lock():
            recorded = self._recorded()
            present_ns = {
                entry.name.removeprefix("waka-")
                for entry in _listdir(NETNS_DIR)
                if entry.name.startswith(f"waka-{self.tag}")
            }
            present_links = {
                name.removeprefix("wk")
                for name in self._links()
                if name.startswith(f"wk{self.tag}")
            }
            wanted: dict[str, list[tuple[str, int | None]]] = {}
            for dyno_id, app_id, port in users:
                wanted.setdefault(network_key(self.tag, app_id), []).append((dyno_id, port))
            removed = []
            for key in sorted(set(recorded) | present_ns | present_links):
                network = recorded.get(key)
                if key in wanted and network and key in present_ns and key in present_links:
                    self._networks[key] = network
                    for dyno_id, port in wanted[key]:
                        self._attached[dyno_id] = (key, port)
                    continue
                self._remove_kernel_objects(key)
                (self.state_dir / f"{key}.json").unlink(missing_ok=True)
                removed.append(netns_name(key))
            if self._networks:
                self._refresh_resolv_conf()
                if not self._table_exists():
                    self._create_table()
                self._sync_ports()
            else:
                if self._table_exists():
                    self._nft(f"delete table ip {table_name(self.tag)}\n")
                    removed.append(f"table ip {table_name(self.tag)}")
                self._release_forwarding()
            return removed

    # ------------------------------------------------------------ creating and removing

    def _create(self, key: str, app: str) -> Network:
        with self._host_lock():
            self._refresh_resolv_conf()
            if not self._networks and not self._table_exists():
                self._create_table()
            routes = json.loads(
                self._run(["ip", "-j", "-4", "route", "show", "table", "all"], None)
            )
            network = Network(key, app, choose_subnet(routed_networks(routes)))
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.state_dir / f"{key}.json", network.to_record())
            self._networks[key] = network
            try:
                self._run(
                    ["ip", "-b", "-"],
                    f"netns add {network.name}\n"
                    f"link add {network.veth} type veth peer name {NS_INTERFACE}"
                    f" netns {network.name}\n"
                    f"addr add {network.host_ip}/{PREFIX} dev {network.veth}\n"
                    f"link set {network.veth} up\n",
                )
                self._run(
                    ["ip", "-n", network.name, "-b", "-"],
                    "link set lo up\n"
                    f"addr add {network.ns_ip}/{PREFIX} dev {NS_INTERFACE}\n"
                    f"link set {NS_INTERFACE} up\n"
                    f"route add default via {network.host_ip}\n",
                )
                _write_sysctl(f"net/ipv4/conf/{network.veth}/forwarding", "1")
                if self.loopback_node:
                    self._in_namespace(
                        network,
                        ["sysctl", "-qw", f"net.ipv4.conf.{NS_INTERFACE}.route_localnet=1"],
                    )
                    self._install_host_services(network)
            except (NetworkError, OSError) as error:
                self._destroy(network)
                raise NetworkError(
                    f"cannot create the private network of {app}: {error}"
                ) from error
            return network

    def _destroy(self, network: Network) -> None:
        """Removes one network (and the agent's table with the last); never raises."""
        self._networks.pop(network.key, None)
        with self._host_lock():
            try:
                self._remove_kernel_objects(network.key)
            except NetworkError as error:
                self._log(f"private network {network.name}: {error}")
            (self.state_dir / f"{network.key}.json").unlink(missing_ok=True)
            if not self._networks:
                try:
                    if self._table_exists():
                        self._nft(f"delete table ip {table_name(self.tag)}\n")
                except NetworkError as error:
                    self._log(f"private networks: cannot remove the nftables table: {error}")
                self._release_forwarding()

    def _remove_kernel_objects(self, key: str) -> None:
        # The veth first: a namespace still held by a process would otherwise keep the pair.
        commands = []
        if host_veth(key) in self._links():
            commands.append(f"link del {host_veth(key)}")
        if (NETNS_DIR / netns_name(key)).exists():
            commands.append(f"netns del {netns_name(key)}")
        if commands:
            self._run(["ip", "-b", "-"], "\n".join(commands) + "\n")

    def _links(self) -> set[str]:
        return {link["ifname"] for link in json.loads(self._run(["ip", "-j", "link"], None))}

    # ------------------------------------------------------------ nftables

    def _nft(self, script: str) -> None:
        self._run(["nft", "-f", "-"], script)

    def _in_namespace(self, network: Network, argv: list[str], stdin: str | None = None) -> str:
        return self._run(["ip", "netns", "exec", network.name, *argv], stdin)

    def _install_host_services(self, network: Network) -> None:
        script = render_host_services(network.ns_ip, network.host_ip, self._host_services or ())
        self._in_namespace(network, ["nft", "-f", "-"], script)

    def _table_exists(self) -> bool:
        try:
            self._run(["nft", "list", "table", "ip", table_name(self.tag)], None)
        except NetworkError:
            return False
        return True

    def _create_table(self) -> None:
        guarded = self._hold_forwarding()
        try:
            self._nft(render_table(self.tag, guarded))
        except NetworkError:
            self._release_forwarding()
            raise

    def _sync_ports(self) -> None:
        """Makes the port map hold exactly the attached dynos' ports (after a restart)."""
        listing = json.loads(
            self._run(["nft", "-j", "list", "map", "ip", table_name(self.tag), "ports"], None)
        )
        current: dict[int, str] = {}
        for item in listing.get("nftables", []):
            for element in item.get("map", {}).get("elem", []):
                port, address = element
                current[int(port)] = str(address)
        wanted = {
            port: str(self._networks[key].ns_ip)
            for key, port in self._attached.values()
            if port is not None
        }
        remove = [port for port, ip in current.items() if wanted.get(port) != ip]
        add = [(port, IPv4Address(ip)) for port, ip in wanted.items() if current.get(port) != ip]
        if remove or add:
            self._nft(render_ports(self.tag, add=add, remove=remove))

    # ------------------------------------------------------------ host-wide state

    @contextlib.contextmanager
    def _host_lock(self) -> Iterator[None]:
        """Serialises creation and removal among the agents of this host. Re-entrant (callers
        hold self._lock, so one thread at a time gets here)."""
        if self._host_depth:
            self._host_depth += 1
            try:
                yield
            finally:
                self._host_depth -= 1
            return
        self._host_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._host_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._host_depth = 1
            try:
                yield
            finally:
                self._host_depth = 0
        finally:
            os.close(fd)

    def _hold_forwarding(self) -> list[str]:
        """Registers this agent as needing forwarding on the uplinks, switching it on where it
        was off; returns the uplinks switched on by waka (to be guarded)."""
        path = self._host_dir / "forwarding.json"
        state = _read_json(path) or {"holders": [], "enabled": []}
        for uplink in self._uplinks():
            if uplink in state["enabled"] or not _INTERFACE.match(uplink):
                continue
            if _read_sysctl(f"net/ipv4/conf/{uplink}/forwarding") == "0":
                _write_sysctl(f"net/ipv4/conf/{uplink}/forwarding", "1")
                state["enabled"].append(uplink)
        if self.tag not in state["holders"]:
            state["holders"].append(self.tag)
        _write_json(path, state)
        return list(state["enabled"])

    def _release_forwarding(self) -> None:
        path = self._host_dir / "forwarding.json"
        state = _read_json(path)
        if state is None:
            return
        if self.tag in state["holders"]:
            state["holders"].remove(self.tag)
        if state["holders"]:
            _write_json(path, state)
            return
        for uplink in state["enabled"]:
            with contextlib.suppress(OSError):
                _write_sysctl(f"net/ipv4/conf/{uplink}/forwarding", "0")
        path.unlink(missing_ok=True)

    def _uplinks(self) -> list[str]:
        routes = json.loads(self._run(["ip", "-j", "-4", "route", "show", "default"], None))
        return sorted({route["dev"] for route in routes if route.get("dev")})

    def _refresh_resolv_conf(self) -> None:
        """Writes the namespaces' resolv.conf when the host's will not do (see
        netns_resolv_conf); each sandbox binds the file as it is when it starts."""
        try:
            host = RESOLV_CONF.read_text()
        except OSError:
            self._resolv_conf = None
            return
        try:
            upstream = RESOLVED_UPSTREAM.read_text()
        except OSError:
            upstream = None
        text = netns_resolv_conf(host, upstream)
        if text is None:
            self._resolv_conf = None
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "resolv.conf"
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                self._resolv_conf = path
                return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        self._resolv_conf = path

    def _recorded(self) -> dict[str, Network]:
        found = {}
        for entry in _listdir(self.state_dir):
            if entry.suffix != ".json" or not entry.name.startswith(self.tag):
                continue
            record = _read_json(entry)
            try:
                network = Network.from_record(record or {})
            except (KeyError, ValueError, TypeError):
                entry.unlink(missing_ok=True)
                continue
            found[network.key] = network
        return found


def kernel_objects(tag: str) -> list[str]:
    """Every netns, veth and nftables table of the agent with this tag (for tests and
    diagnostics): empty once everything is cleaned up."""
    found = [f"netns {e.name}" for e in _listdir(NETNS_DIR) if e.name.startswith(f"waka-{tag}")]
    links = json.loads(run_tool(["ip", "-j", "link"]))
    found += [f"link {link['ifname']}" for link in links if link["ifname"].startswith(f"wk{tag}")]
    tables = json.loads(run_tool(["nft", "-j", "list", "tables", "ip"]))
    found += [
        f"table ip {item['table']['name']}"
        for item in tables.get("nftables", [])
        if "table" in item and item["table"]["name"] == table_name(tag)
    ]
    return found


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except FileNotFoundError:
        return []


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value)
