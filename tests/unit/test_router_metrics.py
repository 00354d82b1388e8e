"""Router metrics (Prometheus text), log lines, Traefik configuration, and the timeout watchdog."""

from __future__ import annotations

import json
import re

import pytest
import trio

from waka.controller._router_log import H12, H14, H80, request_line
from waka.controller._router_metrics import RouterMetrics
from waka.controller._router_table import AppRoute, RoutingTable, WebDyno
from waka.controller._router_traefik import traefik_config
from waka.controller._router_watchdog import Watchdog

SAMPLE = re.compile(r"([a-z_]+)(\{[^}]*\})? (\S+)")


def samples(text: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) waka_router_[a-z_]+ .+", line), line
            continue
        match = SAMPLE.fullmatch(line)
        assert match, line
        result[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return result


def test_histogram_buckets_are_cumulative_and_counts_match() -> None:
    metrics = RouterMetrics()
    for seconds, status in ((0.0005, 200), (0.02, 200), (0.02, 404), (45.0, 503)):
        metrics.started("a")
        metrics.finished("a", status, seconds, "H12" if status == 503 else None)
    got = samples(metrics.render({"10.0.0.1:5000": 2}))
    bucket = 'waka_router_request_duration_seconds_bucket{app="a",le="%s"}'
    assert got[bucket % "0.001"] == 1
    assert got[bucket % "0.025"] == 3
    assert got[bucket % "30.0"] == 3
    assert got[bucket % "+Inf"] == 4
    assert got['waka_router_request_duration_seconds_count{app="a"}'] == 4
    assert got['waka_router_request_duration_seconds_sum{app="a"}'] == pytest.approx(45.0405)
    assert got['waka_router_requests_total{app="a",status="200"}'] == 2
    assert got['waka_router_errors_total{app="a",code="H12"}'] == 1
    assert got['waka_router_requests_in_flight{app="a"}'] == 0
    assert got['waka_router_backend_in_flight{address="10.0.0.1:5000"}'] == 2


def test_forgetting_an_app_drops_its_series() -> None:
    metrics = RouterMetrics()
    metrics.started("gone")
    metrics.finished("gone", 200, 0.1)
    metrics.forget("gone")
    assert "gone" not in metrics.render()


def test_success_line_has_every_heroku_field() -> None:
    line = request_line(
        method="GET",
        path="/",
        host="hello.localhost",
        request_id="abc",
        fwd="127.0.0.1",
        dyno="web.1",
        connect=0.0012,
        service=0.0049,
        status=200,
        sent=1382,
        protocol="http",
    )
    assert line == (
        'at=info method=GET path="/" host=hello.localhost request_id=abc fwd="127.0.0.1" '
        "dyno=web.1 connect=1ms service=5ms status=200 bytes=1382 protocol=http"
    )


@pytest.mark.parametrize(
    ("error", "prefix"),
    [
        (H12, 'at=error code=H12 desc="Request timeout" '),
        (H14, 'at=error code=H14 desc="No web processes running" '),
        (H80, 'at=info code=H80 desc="Maintenance mode" '),
    ],
)
def test_error_lines_lead_with_the_code_and_leave_unknown_fields_empty(error, prefix) -> None:
    line = request_line(
        method="GET",
        path='/"q"',
        host="h",
        request_id="r",
        fwd="f",
        dyno="",
        connect=None,
        service=None,
        status=503,
        sent=None,
        protocol="http",
        error=error,
    )
    assert line.startswith(prefix)
    assert line.endswith(
        'path="/%22q%22" host=h request_id=r fwd="f" dyno= connect= service= status=503 bytes= '
        "protocol=http"
    )


def test_traefik_config_lists_routers_by_host_and_live_servers() -> None:
    table = RoutingTable(domain="apps.lan")
    table.update_app(
        AppRoute.build(
            "hello",
            [
                WebDyno("web.1", "up", "10.0.0.1:20000"),
                WebDyno("web.2", "up", "10.0.0.2:20001"),
                WebDyno("web.3", "crashed"),
            ],
        )
    )
    table.update_app(
        AppRoute.build("quiet", [WebDyno("web.1", "up", "10.0.0.3:1")], maintenance=True)
    )
    table.set_domains({"example.home.lan": "hello", "*.wild.lan": "hello"})
    table.drain("10.0.0.2:20001")
    config = json.loads(json.dumps(traefik_config(table, entry_points=["web"])))
    assert config == {
        "http": {
            "routers": {
                "waka-hello": {
                    "rule": "Host(`hello.apps.lan`) || HostRegexp(`^[^.]+\\.wild\\.lan$`) || "
                    "Host(`example.home.lan`)",
                    "service": "waka-hello",
                    "entryPoints": ["web"],
                },
                "waka-quiet": {
                    "rule": "Host(`quiet.apps.lan`)",
                    "service": "waka-quiet",
                    "entryPoints": ["web"],
                },
            },
            "services": {
                "waka-hello": {
                    "loadBalancer": {
                        "servers": [{"url": "http://10.0.0.1:20000"}],
                        "passHostHeader": True,
                    }
                },
                "waka-quiet": {"loadBalancer": {"servers": [], "passHostHeader": True}},
            },
        }
    }


def test_watchdog_cancels_only_expired_scopes() -> None:
    async def main() -> None:
        watchdog = Watchdog(tick=0.01)
        keeps, expires = trio.CancelScope(), trio.CancelScope()
        kept = watchdog.arm(keeps, trio.current_time() + 60)
        expired = watchdog.arm(expires, trio.current_time() - 1)
        watchdog.check(trio.current_time())
        assert expired.fired and expires.cancel_called
        assert not kept.fired and not keeps.cancel_called
        kept.at = trio.current_time() - 1
        watchdog.disarm(kept)
        watchdog.check(trio.current_time())
        assert not keeps.cancel_called
        with trio.CancelScope() as scope:
            watchdog.arm(scope, trio.current_time() + 0.02)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watchdog.run)
                await trio.sleep_forever()
        assert scope.cancelled_caught
        with pytest.raises(ValueError, match="positive"):
            Watchdog(tick=0)

    trio.run(main)
