"""The router on real sockets: routing by host, Heroku's headers, keep-alive, logs, metrics."""

from __future__ import annotations

import re
import time

import trio
import trio.testing
from test_router_support import Env, echo_headers, headers_of, run_router

from waka.controller._http import Request, ResponseWriter, send_text

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def named(name: str):
    async def handler(request: Request, response: ResponseWriter) -> None:
        while await request.body.receive_some():
            pass
        await send_text(response, 200, f"{name} {request.target}")

    return handler


def test_routes_by_app_host_and_by_custom_domain() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(named("hello")))
        env.route("other", await env.backend(named("other")))
        env.table.set_domains({"example.home.lan": "other", "*.wild.lan": "hello"})
        assert (await env.get("hello.localhost", "/a?b=1")).text == "hello /a?b=1"
        assert (await env.get(f"other.localhost:{env.port}")).text == "other /"
        assert (await env.get("Example.Home.LAN")).text == "other /"
        assert (await env.get("any.wild.lan")).text == "hello /"

    run_router(scenario)


def test_unknown_host_gets_a_404_page() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(named("hello")))
        for host in ("nope.localhost", "hello.elsewhere", "localhost", "a.b.hello.localhost"):
            reply = await env.get(host)
            assert reply.status == 404, host
            assert "No such app" in reply.text
        env.table.remove_app("hello")
        assert (await env.get("hello.localhost")).status == 404

    run_router(scenario)


def test_app_receives_heroku_forwarding_headers() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(echo_headers))
        before = int(time.time() * 1000)
        reply = await env.get(
            "hello.localhost",
            headers=[("X-Forwarded-For", "203.0.113.7"), ("Via", "1.0 corp-proxy")],
        )
        after = int(time.time() * 1000)
        seen = headers_of(reply)
        assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
        assert seen["x-forwarded-proto"] == ["http"]
        assert seen["x-forwarded-port"] == [str(env.port)]
        assert before <= int(seen["x-request-start"][0]) <= after
        assert seen["via"] == ["1.0 corp-proxy, 1.1 waka"]
        assert UUID.fullmatch(seen["x-request-id"][0])
        assert reply.headers["via"] == "1.1 waka"
        line = await env.wait_for_line("hello", "status=200")
        assert f"request_id={seen['x-request-id'][0]}" in line
        assert 'fwd="203.0.113.7, 127.0.0.1"' in line

    run_router(scenario)


def test_client_request_id_is_kept_only_when_valid() -> None:
    valid = "abcDEF0123456789+/=-xyz"
    too_short = "abc123"
    bad_chars = "abcdefghijklmnopqrstuvwxyz;DROP"

    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(echo_headers))
        for sent, kept in (
            (valid, True),
            (too_short, False),
            (bad_chars, False),
            ("a" * 201, False),
        ):
            seen = headers_of(await env.get("hello.localhost", headers=[("X-Request-Id", sent)]))
            assert (
                seen["x-request-id"] == [sent] if kept else UUID.fullmatch(seen["x-request-id"][0])
            )

    run_router(scenario)


def test_client_cannot_spoof_proto_port_or_start_and_hop_by_hop_headers_stay_behind() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(echo_headers))
        seen = headers_of(
            await env.get(
                "hello.localhost",
                headers=[
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Port", "443"),
                    ("X-Request-Start", "1"),
                    ("Connection", "X-Secret-Hop"),
                    ("X-Secret-Hop", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("TE", "trailers"),
                ],
            )
        )
        assert seen["x-forwarded-proto"] == ["http"]
        assert seen["x-forwarded-port"] == [str(env.port)]
        assert seen["x-request-start"] != ["1"]
        for hop in ("x-secret-hop", "keep-alive", "te", "connection"):
            assert hop not in seen, hop

    run_router(scenario)


def test_a_trusted_proxy_in_front_says_which_scheme_and_port_the_client_used() -> None:
    """A TLS terminator (Caddy, Traefik) at a trusted address: apps that redirect plain HTTP to
    HTTPS must see https, or every request would redirect forever."""

    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(echo_headers))
        for sent, proto, port in (
            ([("X-Forwarded-Proto", "https"), ("X-Forwarded-Port", "8443")], "https", "8443"),
            ([("X-Forwarded-Proto", "HTTPS")], "https", "443"),
            ([("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Port", "1")], "http", str(env.port)),
            ([], "http", str(env.port)),
        ):
            seen = headers_of(await env.get("hello.localhost", headers=sent))
            assert (seen["x-forwarded-proto"], seen["x-forwarded-port"]) == ([proto], [port])
        line = await env.wait_for_line("hello", "protocol=https")
        assert "status=200" in line

    run_router(scenario, trusted_proxies=("127.0.0.0/8",))


def test_keep_alive_carries_many_requests_on_one_connection_and_reuses_dyno_connections() -> None:
    connections_seen: set[int] = set()

    async def handler(request: Request, response: ResponseWriter) -> None:
        connections_seen.add(id(request.body._connection))
        await send_text(response, 200, request.target)

    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(handler))
        client = await env.client()
        for i in range(200):
            reply = await client.request("GET", f"/{i}", host="hello.localhost")
            assert (reply.status, reply.text) == (200, f"/{i}")
        await client.aclose()
        # One kept-alive connection to the dyno served all 200 requests.
        assert len(connections_seen) == 1
        assert len(env.app_lines("hello")) == 200

    run_router(scenario)


def test_router_logs_one_heroku_line_per_request() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(named("hello")))
        await env.get("hello.localhost", '/p?q="x"')
        line = await env.wait_for_line("hello", "status=")
        assert re.fullmatch(
            r'at=info method=GET path="/p\?q=%22x%22" host=hello\.localhost request_id=\S+ '
            r'fwd="127\.0\.0\.1" dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ '
            r"protocol=http",
            line,
        ), line

    run_router(scenario)


def test_requests_spread_over_dynos_and_prefer_the_least_busy() -> None:
    release = trio.Event()
    slow_started = trio.Event()

    async def slow(request: Request, response: ResponseWriter) -> None:
        slow_started.set()
        await release.wait()
        await send_text(response, 200, "slow")

    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(named("a")), await env.backend(named("b")))
        bodies = [(await env.get("hello.localhost")).text for _ in range(6)]
        assert sorted(bodies) == ["a /"] * 3 + ["b /"] * 3  # round robin when idle
        env.route("hello", await env.backend(slow), await env.backend(named("b")))
        results: list[str] = []
        slow_done = trio.Event()

        async def slow_request() -> None:
            results.append((await env.get("hello.localhost")).text)
            slow_done.set()

        env.nursery.start_soon(slow_request)
        with trio.fail_after(5):
            await slow_started.wait()
        address_a = env.table.route("hello").backends[0].address  # type: ignore[union-attr]
        assert env.table.in_flight(address_a) == 1
        # web.1 is busy: every new request goes to web.2 until it is free.
        assert [(await env.get("hello.localhost")).text for _ in range(4)] == ["b /"] * 4
        release.set()
        with trio.fail_after(5):
            await slow_done.wait()
        assert results == ["slow"]

    run_router(scenario)


def test_draining_dyno_gets_no_new_requests_while_its_in_flight_ones_finish() -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(request: Request, response: ResponseWriter) -> None:
        started.set()
        await release.wait()
        await send_text(response, 200, "finished")

    async def scenario(env: Env) -> None:
        old, new = await env.backend(slow), await env.backend(named("new"))
        env.route("hello", old)
        finished: list[str] = []
        client_done = trio.Event()

        async def in_flight_request() -> None:
            finished.append((await env.get("hello.localhost")).text)
            client_done.set()

        env.nursery.start_soon(in_flight_request)
        await started.wait()
        env.route("hello", old, new)  # the new dyno is up before the old one leaves
        env.table.drain(old)
        assert env.table.in_flight(old) == 1
        assert [(await env.get("hello.localhost")).text for _ in range(3)] == ["new /"] * 3
        drained = trio.Event()

        async def wait_drained() -> None:
            await env.table.wait_drained(old)
            drained.set()

        env.nursery.start_soon(wait_drained)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not drained.is_set()
        release.set()
        with trio.fail_after(5):
            await drained.wait()
            await client_done.wait()  # the response is on its way to the client
        assert finished == ["finished"]
        assert env.table.in_flight(old) == 0

    run_router(scenario)


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels}` -> value, checking every line is a comment or a well-formed sample."""
    samples: dict[str, float] = {}
    sample = re.compile(
        r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})?) (\S+)'
    )
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = sample.fullmatch(line)
        assert match, f"malformed metrics line {line!r}"
        samples[match.group(1)] = float(match.group(2))
    return samples


def test_metrics_count_requests_by_app_and_status_with_a_latency_histogram() -> None:
    async def scenario(env: Env) -> None:
        env.route("hello", await env.backend(named("hello")))
        for _ in range(3):
            await env.get("hello.localhost")
        env.route("hello", await env.backend(named("hello")), maintenance=True)
        await env.get("hello.localhost")
        await env.get("ghost.localhost")
        for host in ("localhost", "127.0.0.1"):
            reply = await env.get(host, "/metrics")
            assert reply.status == 200
            assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse_prometheus(reply.text)
        assert samples['waka_router_requests_total{app="hello",status="200"}'] == 3
        assert samples['waka_router_requests_total{app="hello",status="503"}'] == 1
        assert samples['waka_router_errors_total{app="hello",code="H80"}'] == 1
        assert samples['waka_router_request_duration_seconds_count{app="hello"}'] == 4
        assert samples['waka_router_request_duration_seconds_bucket{app="hello",le="+Inf"}'] == 4
        assert samples["waka_router_unknown_host_total"] == 1

    run_router(scenario)


def test_metrics_never_shadow_an_app() -> None:
    async def scenario(env: Env) -> None:
        env.route("metrics", await env.backend(named("metrics-app")))
        env.route("home", await env.backend(named("home-app")))
        env.table.set_domains({"localhost": "home"})
        assert (await env.get("metrics.localhost", "/metrics")).text == "metrics-app /metrics"
        assert (await env.get("localhost", "/metrics")).text == "home-app /metrics"

    run_router(scenario)
