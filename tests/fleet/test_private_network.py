"""A private-network app on a node with a real address (a host namespace of the test's own): the
dyno reports no address of its own, and the router reaches it at the node's address and its port,
through the agent's nftables port map into the app's namespace."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import pytest
from conftest import wait_for

from fleet.conftest import open_cluster
from waka.agent._netns import agent_tag, netns_name, table_name

pytestmark = pytest.mark.root


def get(router: str, host: str) -> tuple[int, str]:
    address, _, port = router.rpartition(":")
    conn = http.client.HTTPConnection(address, int(port), timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def in_host(netns: str, *argv: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def app_namespaces(tag: str) -> list[str]:
    """The private networks' namespaces of the agent with this tag (they are host-wide files,
    whichever host namespace the agent runs in)."""
    directory = Path("/run/netns")
    prefix = netns_name(tag)
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))


def test_the_router_reaches_a_private_dyno_at_its_nodes_address(tmp_path: Path):
    tag = ""
    try:
        with open_cluster(tmp_path) as cluster:
            agent = cluster.add_agent()
            tag = agent_tag(agent.data_dir.resolve())
            cluster.create_ticker_app("walled", web=True)
            cluster.waka("features:enable", "private-network", "-a", "walled")
            cluster.scale("walled", web=1)
            cluster.wait_converged("walled", "web", 1)
            # ps:exec reaches a dyno on an agent of its own, over the agent's mutual-TLS port.
            execed = cluster.waka(
                "ps:exec", "-a", "walled", "--no-tty", "echo in=$DYNO; exit 4", check=False
            )
            assert execed.returncode == 4 and execed.stdout == "in=web.1\n", execed
            (dyno,) = json.loads(cluster.waka("ps", "-a", "walled", "--json").stdout)
            node_address, _, port = dyno["address"].rpartition(":")
            assert node_address == agent.host.address
            # The port map on the node sends the dyno's port into the app's namespace.
            ports = in_host(agent.host.netns, "nft", "list", "map", "ip", table_name(tag), "ports")
            assert f"{port} : 10.213." in ports, ports
            assert len(app_namespaces(tag)) == 1
            assert cluster.server is not None
            router = cluster.server.router
            wait_for(
                lambda: get(router, "walled.localhost") == (200, "ok"), 30, "the router to route"
            )
            cluster.scale("walled", web=0)
            wait_for(lambda: not app_namespaces(tag), 30, "the app's network to be removed")
            cluster.scale("walled", web=1)
            cluster.wait_converged("walled", "web", 1)
            wait_for(lambda: get(router, "walled.localhost") == (200, "ok"), 30, "routing again")
        # The agent stopped its dyno, and so removed the network, before the host went away.
        assert not app_namespaces(tag)
    finally:
        for name in app_namespaces(tag) if tag else []:
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
