"""The private-network feature on a real `waka up`: an app's dynos in a network namespace of its
own (eth0 out of 10.213.0.0/16, their own loopback), served through the router all the same, and
every namespace, veth and nftables table gone once the dynos are.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, start_up, stop_and_check_clean, wait_for
from test_routing import APP_PY, get

from waka.agent._netns import POOL, agent_tag, kernel_objects

pytestmark = pytest.mark.root

# Prints "HOST:PORT open" or "HOST:PORT closed" for each address given.
PROBE_PY = """\
import socket, sys

for target in sys.argv[1:]:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(target, "open", flush=True)
    except OSError:
        print(target, "closed", flush=True)
"""
# Listens on the dyno's loopback only, as a sidecar (an admin port, a local cache) would.
LISTEN_PY = """\
import os, socket, time

server = socket.create_server(("127.0.0.1", int(os.environ["LOOPBACK_PORT"])))
print("listening on loopback", flush=True)
while True:
    server.accept()[0].close()
"""


def remove_kernel_objects(tag: str) -> list[str]:
    """Removes whatever the agent with this tag left (so that a failed test leaves the host
    clean too); returns what there was."""
    found = kernel_objects(tag)
    for item in found:
        kind, _, name = item.partition(" ")
        if kind == "netns":
            command = ["ip", "netns", "del", name]
        elif kind == "link":
            command = ["ip", "link", "del", name]
        else:
            command = ["nft", "delete", *name.split()]
        subprocess.run(command, check=False, capture_output=True)
    return found


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tag_of(daemon: Daemon) -> str:
    """The agent's tag, which every kernel object of its private networks is named with."""
    return agent_tag((daemon.data_dir / "agent").resolve())


def stop_and_check_no_networks(daemon: Daemon) -> None:
    tag = tag_of(daemon)
    try:
        stop_and_check_clean(daemon)
    finally:
        left = remove_kernel_objects(tag)
    assert not left, f"private networks outlived waka: {left}"


@pytest.fixture(scope="module")
def waka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_up(tmp_path_factory.mktemp("private-network") / "data", "--stop-grace", "2")
    try:
        yield daemon
    finally:
        stop_and_check_no_networks(daemon)


def write_source(source: Path) -> Path:
    """A web process that says its dyno and port, a loopback-only listener, and a probe."""
    source.mkdir()
    (source / "app.py").write_text(
        APP_PY.replace(
            "from {os.environ['DYNO']}", "from {os.environ['DYNO']} port {os.environ['PORT']}"
        )
    )
    (source / "probe.py").write_text(PROBE_PY)
    (source / "listen.py").write_text(LISTEN_PY)
    (source / "Procfile").write_text("web: python3 app.py\nworker: python3 listen.py\n")
    return source


def probe(waka: Daemon, app: str, *targets: str) -> dict[str, str]:
    """What a one-off dyno of the app finds open and closed."""
    output = waka.waka("run", "--no-tty", "-a", app, "python3 probe.py " + " ".join(targets))
    return dict(line.split() for line in output.stdout.splitlines() if line.count(" ") == 1)


def features_of(waka: Daemon, app: str) -> dict[str, bool]:
    return {f["name"]: f["enabled"] for f in waka.json("features", "-a", app)}  # type: ignore[attr-defined]


def eth0_addresses(waka: Daemon, app: str) -> list[str]:
    output = waka.waka("run", "--no-tty", "-a", app, "ip -4 -o addr show dev eth0 || true")
    return [part.split("/")[0] for part in output.stdout.split() if "/" in part]


def test_an_app_with_a_private_network_is_served_and_sees_only_its_own_loopback(
    waka: Daemon, tmp_path: Path
):
    tag = tag_of(waka)
    source = write_source(tmp_path / "source")
    neighbour_port = free_loopback_port()

    for app in ("private", "neighbour"):
        waka.waka("apps:create", app, "--no-remote")
    enabled = waka.waka("features:enable", "private-network", "-a", "private")
    assert "Restarting" not in enabled.stdout  # nothing ran yet
    assert features_of(waka, "private") == {"preboot": True, "private-network": True}
    assert not features_of(waka, "neighbour")["private-network"]
    waka.waka("config:set", f"LOOPBACK_PORT={neighbour_port}", "-a", "neighbour")
    for app in ("private", "neighbour"):
        waka.waka("deploy", "-a", app, str(source))
    waka.waka("ps:scale", "worker=1", "-a", "neighbour")
    web = waka.wait_for_dyno("private", release=1)
    # On a loopback node `waka ps` shows (and the router dials) the namespace's address.
    assert ipaddress.ip_address(web["address"].rpartition(":")[0]) in POOL
    waka.wait_for_dyno("neighbour")

    # Through the router, as any app.
    wait_for(lambda: get(waka, "private.localhost")[0] == 200, 30, "the router to route")
    status, body, _ = get(waka, "private.localhost")
    assert status == 200 and body.startswith("hi from web.1 port ")
    web_port = body.split()[-1]

    # Its own eth0 address out of the pool, on a network the node made for it.
    (address,) = eth0_addresses(waka, "private")
    assert ipaddress.ip_address(address) in POOL
    assert any(item.startswith(f"netns waka-{tag}") for item in kernel_objects(tag))

    # The host's loopback and the other app's loopback-only port are out of reach; its own
    # web dyno (same app, same namespace) is not.
    with socket.create_server(("127.0.0.1", 0)) as host_listener:
        host_port = host_listener.getsockname()[1]
        wait_for(
            lambda: (
                "listening on loopback" in waka.waka("logs", "-a", "neighbour", "-n", "200").stdout
            ),
            60,
            "the neighbour's loopback listener",
        )
        seen = probe(
            waka,
            "private",
            f"127.0.0.1:{host_port}",
            f"127.0.0.1:{neighbour_port}",
            f"127.0.0.1:{web_port}",
        )
        assert seen == {
            f"127.0.0.1:{host_port}": "closed",
            f"127.0.0.1:{neighbour_port}": "closed",
            f"127.0.0.1:{web_port}": "open",
        }
        # The same ports are there, for a dyno on the host's network.
        seen = probe(waka, "neighbour", f"127.0.0.1:{host_port}", f"127.0.0.1:{neighbour_port}")
        assert set(seen.values()) == {"open"}, seen
    assert eth0_addresses(waka, "neighbour") != [address]

    # Turning it off replaces the dynos with ones on the host's network; the app's network goes
    # with the last dyno that used it.
    disabled = waka.waka("features:disable", "private-network", "-a", "private")
    assert "Restarting dynos" in disabled.stdout
    assert not features_of(waka, "private")["private-network"]

    def replaced_and_served() -> bool:
        dynos = waka.dynos("private")
        return (
            len(dynos) == 1
            and dynos[0]["state"] == "up"
            and get(waka, "private.localhost")[0] == 200
        )

    wait_for(replaced_and_served, 60, "the app's dyno to be replaced on the host's network")
    wait_for(lambda: not kernel_objects(tag), 30, "the app's private network to be removed")
    assert address not in eth0_addresses(waka, "private")
    for app in ("private", "neighbour"):
        waka.waka("ps:scale", "web=0", "worker=0", "-a", app)


def test_unknown_features_are_refused(waka: Daemon):
    waka.waka("apps:create", "plain", "--no-remote")
    result = waka.waka("features:enable", "private-networks", "-a", "plain", check=False)
    assert result.returncode == 1
    assert 'unknown feature "private-networks"' in result.stderr
    assert "preboot, private-network" in result.stderr


def test_dynos_keep_their_network_across_an_agent_crash(tmp_path: Path):
    daemon = start_up(tmp_path / "data", "--stop-grace", "2")
    try:
        daemon.waka("apps:create", "survivor", "--no-remote")
        daemon.waka("features:enable", "private-network", "-a", "survivor")
        daemon.waka("deploy", "-a", "survivor", str(write_source(tmp_path / "source")))
        (before,) = [daemon.wait_for_dyno("survivor", release=1)]
        wait_for(lambda: get(daemon, "survivor.localhost")[0] == 200, 30, "the router to route")
        (address,) = eth0_addresses(daemon, "survivor")
        objects = kernel_objects(tag_of(daemon))
        # Controller and agent die at once; the dyno, and so its network, do not.
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(30)
        assert kernel_objects(tag_of(daemon)) == objects
        daemon = start_up(tmp_path / "data", "--stop-grace", "2")
        wait_for(
            lambda: (
                get(daemon, "survivor.localhost")[:2]
                == (200, f"hi from web.1 port {before['address'].rpartition(':')[2]}\n")
            ),
            60,
            "the adopted dyno to be routed again",
        )
        (after,) = daemon.dynos("survivor")
        assert after["id"] == before["id"]
        assert eth0_addresses(daemon, "survivor") == [address]
        assert kernel_objects(tag_of(daemon)) == objects
        assert "stale private network" not in daemon.log()
    finally:
        stop_and_check_no_networks(daemon)
