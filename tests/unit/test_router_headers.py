"""What the router adds, keeps and drops on the way to the dyno and back."""

from __future__ import annotations

import re
from ipaddress import ip_network

import pytest

from waka.controller._router import trusted_networks
from waka.controller._router_headers import (
    client_response,
    forwarded_for,
    is_upgrade,
    new_uuid4,
    request_id,
    simple_response,
    upstream_request,
)
from waka.controller._router_http1 import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    parse_request_head,
    parse_response_head,
)


def request(*lines: str):
    return parse_request_head(("\r\n".join(lines) + "\r\n\r\n").encode())


def response(*lines: str):
    return parse_response_head(("\r\n".join(lines) + "\r\n\r\n").encode())


def header_lines(raw: bytes) -> list[str]:
    return raw.decode().split("\r\n")[1:-2]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"abcdefghij0123456789", True),  # 20 characters
        (b"A+/=-" * 40, True),  # 200 characters
        (b"abcdefghij012345678", False),  # 19
        (b"A" * 201, False),
        (b"abcdefghij0123456789_", False),
        (b"abcdefghij 0123456789", False),
        (None, False),
    ],
)
def test_request_id_is_passed_through_only_when_valid(sent: bytes | None, kept: bool) -> None:
    result = request_id(sent)
    if kept:
        assert result == sent
    else:
        assert re.fullmatch(
            rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", result
        )


def test_generated_request_ids_differ() -> None:
    assert len({new_uuid4() for _ in range(1000)}) == 1000


def test_forwarded_for_appends_the_client_to_what_it_sent() -> None:
    assert forwarded_for(request("GET / HTTP/1.1"), b"10.1.1.1") == b"10.1.1.1"
    both = request(
        "GET / HTTP/1.1", "X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: 2.2.2.2, 3.3.3.3"
    )
    assert forwarded_for(both, b"10.1.1.1") == b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.1.1"


def upstream(head, **overrides: object) -> list[str]:
    arguments: dict[str, object] = {
        "target": head.target,
        "forwarded_for": b"1.2.3.4, 10.0.0.1",
        "proto": b"https",
        "port": b"443",
        "start_ms": 1700000000123,
        "request_id": b"req-id-000000000000000",
        "upgrade": False,
    }
    arguments.update(overrides)
    raw = upstream_request(head, **arguments)  # type: ignore[arg-type]
    assert raw.endswith(b"\r\n\r\n")
    return raw.decode().split("\r\n")[:-2]


def test_upstream_request_carries_heroku_headers_and_drops_hop_by_hop_ones() -> None:
    head = request(
        "POST /x HTTP/1.1",
        "Host: app.localhost",
        "Connection: keep-alive, X-Hop",
        "X-Hop: secret",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Upgrade: h2c",
        "Expect: 100-continue",
        "X-Forwarded-Proto: http",
        "X-Forwarded-Port: 1",
        "X-Request-Start: 5",
        "X-Request-Id: spoofed",
        "X-Forwarded-For: 1.2.3.4",
        "Via: 1.0 first",
        "Content-Length: 4",
        "User-Agent: test",
    )
    assert upstream(head) == [
        "POST /x HTTP/1.1",
        "Host: app.localhost",
        "Content-Length: 4",
        "User-Agent: test",
        "X-Forwarded-For: 1.2.3.4, 10.0.0.1",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Port: 443",
        "X-Request-Start: 1700000000123",
        "X-Request-Id: req-id-000000000000000",
        "Via: 1.0 first, 1.1 waka",
    ]


def test_upstream_request_keeps_upgrade_headers_for_a_websocket_and_rechunks_chunked_bodies() -> (
    None
):
    ws = request("GET /ws HTTP/1.1", "Host: a", "Connection: Upgrade", "Upgrade: websocket")
    assert is_upgrade(ws)
    lines = upstream(ws, upgrade=True)
    assert lines[-2:] == ["Connection: Upgrade", "Upgrade: websocket"]
    assert not is_upgrade(request("GET / HTTP/1.1", "Upgrade: websocket"))
    assert not is_upgrade(request("GET / HTTP/1.0", "Connection: upgrade", "Upgrade: websocket"))
    chunked = request("POST / HTTP/1.1", "Transfer-Encoding: chunked")
    assert upstream(chunked)[-1] == "Transfer-Encoding: chunked"


def test_client_response_reframes_and_drops_hop_by_hop_headers() -> None:
    head = response(
        "HTTP/1.1 200 OK",
        "Content-Type: text/plain",
        "Transfer-Encoding: chunked",
        "Content-Length: 99",
        "Connection: X-Hop",
        "X-Hop: 1",
        "Via: 1.1 app-cache",
    )
    assert header_lines(
        client_response(head, framing=CHUNKED, chunk_it=True, close=False, upgrade=False)
    ) == ["Content-Type: text/plain", "Via: 1.1 app-cache, 1.1 waka", "Transfer-Encoding: chunked"]
    closing = response("HTTP/1.0 200 OK", "Content-Type: text/plain")
    assert header_lines(
        client_response(closing, framing=UNTIL_CLOSE, chunk_it=False, close=True, upgrade=False)
    ) == ["Content-Type: text/plain", "Via: 1.1 waka", "Connection: close"]
    sized = response("HTTP/1.1 404 Not Found", "Content-Length: 3")
    raw = client_response(sized, framing=3, chunk_it=False, close=False, upgrade=False)
    assert raw.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert header_lines(raw) == ["Content-Length: 3", "Via: 1.1 waka"]
    head_reply = response("HTTP/1.1 200 OK", "Content-Length: 3")
    assert "Content-Length: 3" in header_lines(
        client_response(head_reply, framing=NO_BODY, chunk_it=False, close=False, upgrade=False)
    )


def test_router_made_responses_are_complete() -> None:
    raw = simple_response(503, b"<p>down</p>", close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: 11" in head and b"Connection: close" in head
    assert body == b"<p>down</p>"
    assert (
        simple_response(503, b"<p>down</p>", head_only=True)
        == head.replace(b"\r\nConnection: close", b"") + b"\r\n\r\n"
    )


def test_trusted_proxies_are_addresses_or_networks_and_a_bad_one_is_named():
    assert trusted_networks(["127.0.0.1", " 10.0.0.0/8", "::1", "192.168.1.7/24"]) == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
        ip_network("192.168.1.0/24"),
    )
    with pytest.raises(ValueError, match=re.escape("'caddy.lan' is not an IP address or network")):
        trusted_networks(["127.0.0.1", "caddy.lan"])
