"""The routing table: hosts to apps, choosing a dyno, draining, in-flight accounting."""

from __future__ import annotations

import pytest
import trio

from waka.controller._router_table import (
    AppRoute,
    Backend,
    RoutingTable,
    WebDyno,
    normalize_host,
)


def table_with(*routes: AppRoute, domain: str = "localhost") -> RoutingTable:
    table = RoutingTable(domain=domain)
    for route in routes:
        table.update_app(route)
    return table


def route(app: str, *addresses: str) -> AppRoute:
    return AppRoute.build(app, [WebDyno(f"web.{i}", "up", a) for i, a in enumerate(addresses, 1)])


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("hello.localhost", "hello.localhost"),
        ("Hello.LocalHost:8080", "hello.localhost"),
        ("example.com.", "example.com"),
        ("  spaced.example  ", "spaced.example"),
        ("[::1]:8080", "[::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
    ],
)
def test_hosts_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize(
    ("host", "app"),
    [
        ("hello.apps.lan", "hello"),
        ("other.apps.lan", "other"),
        ("example.home.lan", "other"),
        ("x.wild.lan", "hello"),
        ("wild.lan", None),
        ("a.b.wild.lan", None),
        ("ghost.apps.lan", None),  # no such app
        ("apps.lan", None),
        ("hello.other.apps.lan", None),
        ("Hello.apps.lan", None),  # resolve() expects a normalized host
        ("h.apps.lan", None),  # not a valid app name
    ],
)
def test_resolves_default_hosts_custom_domains_and_wildcards(host: str, app: str | None) -> None:
    table = table_with(route("hello"), route("other"), domain="apps.lan")
    table.set_domains({"Example.Home.Lan": "other", "*.wild.lan": "hello", "gone.lan": "ghost"})
    assert table.resolve(host) == app


def test_resolve_follows_every_change_to_apps_and_domains() -> None:
    table = table_with(route("hello", "h:1"))
    assert table.resolve("hello.localhost") == "hello"
    assert table.resolve("www.example.com") is None
    table.set_domains({"www.example.com": "hello"})
    assert table.resolve("www.example.com") == "hello"
    table.remove_app("hello")
    assert table.resolve("hello.localhost") is None
    assert table.resolve("www.example.com") is None
    table.update_app(route("hello", "h:2"))
    assert table.resolve("hello.localhost") == "hello"
    assert table.resolve("www.example.com") == "hello"


def test_custom_domain_of_a_missing_app_resolves_to_nothing() -> None:
    table = table_with(route("hello"))
    table.set_domains({"gone.lan": "ghost"})
    assert table.resolve("gone.lan") is None


def test_route_build_decides_crashed_and_no_web_dynos() -> None:
    built = AppRoute.build(
        "a",
        [
            WebDyno("web.2", "up", "10.0.0.2:1", 3),
            WebDyno("web.1", "up", "10.0.0.1:1", 3),
            WebDyno("web.3", "crashed"),
            WebDyno("web.4", "starting", "10.0.0.4:1"),
        ],
        maintenance=True,
    )
    assert built.backends == (Backend("web.1", "10.0.0.1:1", 3), Backend("web.2", "10.0.0.2:1", 3))
    assert (built.has_web_dynos, built.crashed, built.maintenance) == (True, True, True)
    empty = AppRoute.build("b", [])
    assert (empty.backends, empty.has_web_dynos, empty.crashed) == ((), False, False)


def test_idle_dynos_are_chosen_round_robin() -> None:
    table = table_with(route("a", "h:1", "h:2", "h:3"))
    app = table.route("a")
    assert app is not None
    picks = [table.choose(app, 0.0).address for _ in range(6)]  # type: ignore[union-attr]
    assert picks == ["h:1", "h:2", "h:3", "h:1", "h:2", "h:3"]


def test_the_least_busy_dyno_is_chosen() -> None:
    table = table_with(route("a", "h:1", "h:2", "h:3"))
    app = table.route("a")
    assert app is not None
    for address, busy in (("h:1", 2), ("h:2", 1), ("h:3", 3)):
        for _ in range(busy):
            table.acquire(address)
    assert [table.choose(app, 0.0).address for _ in range(3)] == ["h:2"] * 3  # type: ignore[union-attr]
    table.release("h:3")
    table.release("h:3")
    table.release("h:3")
    assert table.choose(app, 0.0).address == "h:3"  # type: ignore[union-attr]


def test_draining_and_excluded_dynos_are_skipped_and_quarantine_is_a_preference() -> None:
    table = table_with(route("a", "h:1", "h:2", "h:3"))
    app = table.route("a")
    assert app is not None
    table.drain("h:1")
    table.quarantine("h:2", until=10.0)
    assert table.choose(app, now=5.0).address == "h:3"  # type: ignore[union-attr]
    assert table.choose(app, now=5.0, exclude=["h:3"]).address == "h:2"  # type: ignore[union-attr]
    assert table.choose(app, now=5.0, exclude=["h:2", "h:3"]) is None
    assert table.live_addresses() == {"h:2", "h:3"}
    assert not table.is_live("h:1")


def test_drain_mark_lasts_until_the_dyno_leaves_the_route() -> None:
    table = table_with(route("a", "h:1", "h:2"))
    table.drain("h:1")
    table.update_app(route("a", "h:1", "h:2"))  # a late update still listing it does not revive it
    assert not table.is_live("h:1")
    table.update_app(route("a", "h:2"))
    table.update_app(route("a", "h:1", "h:2"))  # the address came back: a new dyno, not draining
    assert table.is_live("h:1")


def test_in_flight_counts_survive_the_dyno_leaving_the_route() -> None:
    table = table_with(route("a", "h:1"))
    table.acquire("h:1")
    table.acquire("h:1")
    table.remove_app("a")
    assert table.in_flight("h:1") == 2
    assert table.in_flight_by_address() == {"h:1": 2}
    table.release("h:1")
    table.release("h:1")
    assert table.in_flight("h:1") == 0
    assert table.in_flight_by_address() == {}
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        table.release("h:1")


def test_wait_drained_returns_when_the_last_request_ends() -> None:
    async def main() -> None:
        table = table_with(route("a", "h:1"))
        await table.wait_drained("h:1")  # nothing in flight: returns at once
        table.acquire("h:1")
        table.acquire("h:1")
        done = trio.Event()

        async def waiter() -> None:
            await table.wait_drained("h:1")
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.01)
            table.release("h:1")
            await trio.sleep(0.01)
            assert not done.is_set()
            table.release("h:1")
            with trio.fail_after(1):
                await done.wait()

    trio.run(main)


def test_hosts_for_lists_the_default_host_then_custom_domains() -> None:
    table = table_with(route("a"), domain="apps.lan")
    table.set_domains({"z.example": "a", "b.example": "a", "c.example": "other"})
    assert table.hosts_for("a") == ["a.apps.lan", "b.example", "z.example"]
