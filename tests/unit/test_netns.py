"""The pure parts of private networks: names that fit the kernel's limits, subnets that avoid what
the host routes, the nftables scripts, and the resolv.conf a namespace gets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from waka.agent._netns import (
    NetworkError,
    agent_tag,
    choose_subnet,
    host_veth,
    netns_name,
    netns_resolv_conf,
    network_key,
    render_host_services,
    render_ports,
    render_table,
    routed_networks,
)


def test_names_are_stable_per_agent_and_fit_an_interface_name(tmp_path: Path):
    tag = agent_tag(tmp_path)
    assert tag == agent_tag(tmp_path / "." / "") and len(tag) == 5
    assert tag != agent_tag(tmp_path / "other")
    key = network_key(tag, "0123456789abcdef0123456789abcdef")
    assert key == tag + "01234567"
    assert len(host_veth(key)) <= 15 and netns_name(key) == f"waka-{key}"
    # Ids that are not hex are hashed into 8 hex digits, the same each time.
    assert network_key(tag, "id-web") == network_key(tag, "id-web") != network_key(tag, "id-x")
    with pytest.raises(ValueError):
        network_key("xyz", "0123456789abcdef")
    with pytest.raises(ValueError):
        network_key(tag, "")


def test_a_subnet_overlaps_nothing_the_host_routes():
    routes = [
        {"dst": "default", "gateway": "192.0.2.1"},
        {"dst": "10.213.0.0/30", "dev": "wkaaaaa01234567"},
        {"dst": "10.213.0.8/29", "dev": "lan"},
        {"dst": "10.213.0.5"},
        {"dst": "not-an-address"},
    ]
    used = routed_networks(routes)
    assert IPv4Network("10.213.0.5/32") in used and len(used) == 3
    # .0/30 routed, .4/30 holds .5, .8/30 and .12/30 lie in the /29.
    assert choose_subnet(used) == IPv4Network("10.213.0.16/30")
    assert not any(choose_subnet(used).overlaps(n) for n in used)
    with pytest.raises(NetworkError, match="no free /30"):
        choose_subnet([IPv4Network("10.0.0.0/8")])


def test_the_table_maps_ports_masquerades_and_guards_switched_uplinks():
    script = render_table("abcde", ["eth0"])
    assert "table ip waka-abcde {" in script
    assert "dnat to tcp dport map @ports" in script
    assert 'iifname "wkabcde*" oifname != "wk*" masquerade' in script
    assert 'iifname "eth0" oifname != "wk*" drop' in script
    # Loopback is never DNAT'd (that would need route_localnet).
    assert "ip daddr != 127.0.0.0/8" in script
    with pytest.raises(ValueError):
        render_table("abcde", ['eth0" accept; #'])
    ports = render_ports("abcde", add=[(20001, IPv4Address("10.213.0.2"))], remove=[20000])
    assert ports.splitlines() == [
        "delete element ip waka-abcde ports { 20000 }",
        "add element ip waka-abcde ports { 20001 : 10.213.0.2 }",
    ]


def test_a_namespace_reaches_the_host_services_at_loopback_and_only_those():
    ns_ip, host_ip = IPv4Address("10.213.0.6"), IPv4Address("10.213.0.5")
    script = render_host_services(ns_ip, host_ip, [30001, 30000, 30001])
    lines = script.splitlines()
    # Replaces whatever the namespace had, in one transaction.
    assert lines[:2] == ["add table ip waka-services", "delete table ip waka-services"]
    assert "    ip daddr 127.0.0.1 tcp dport { 30000, 30001 } dnat to 10.213.0.5" in lines
    assert '    oifname "eth0" ip saddr 127.0.0.0/8 snat to 10.213.0.6' in lines
    # No services: the table goes, and with it every rule.
    assert render_host_services(ns_ip, host_ip, []).splitlines() == lines[:2]


def test_loopback_resolvers_are_replaced_by_the_upstream_ones():
    resolved = "nameserver 127.0.0.53\noptions edns0\nsearch lan\n"
    upstream = "nameserver 192.0.2.53\nnameserver 127.0.0.1\n"
    text = netns_resolv_conf(resolved, upstream)
    assert text is not None
    assert "nameserver 192.0.2.53" in text and "127.0.0" not in text
    assert "search lan" in text and "options edns0" in text
    # A host file with reachable servers works in a namespace as it is.
    assert netns_resolv_conf("nameserver 192.0.2.53\n", None) is None
    # Nothing reachable to offer: the host's file stays.
    assert netns_resolv_conf(resolved, None) is None
