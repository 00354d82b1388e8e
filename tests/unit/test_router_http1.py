"""The router's HTTP/1.1 wire: strict request heads, framing rules, chunked bodies."""

from __future__ import annotations

import socket

import pytest
import trio

from waka.controller._router_http1 import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    Conn,
    PeerClosed,
    ProtocolError,
    chunk,
    copy_chunked,
    parse_request_head,
    parse_response_head,
    response_framing,
)


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_a_request_head_is_parsed_with_names_lowercased_and_raw_names_kept() -> None:
    parsed = parse_request_head(
        head(
            "POST /a?b=c HTTP/1.1",
            "Host: x.localhost",
            "X-Thing:  spaced value \t",
            "Content-Length: 5",
        )
    )
    assert (parsed.method, parsed.target, parsed.version) == (b"POST", b"/a?b=c", b"1.1")
    assert parsed.headers[1] == (b"x-thing", b"X-Thing", b"spaced value")
    assert parsed.get(b"host") == b"x.localhost"
    assert parsed.framing == 5


@pytest.mark.parametrize(
    ("lines", "framing"),
    [
        (["GET / HTTP/1.1", "Host: a"], NO_BODY),
        (["POST / HTTP/1.1", "Content-Length: 0"], NO_BODY),
        (["POST / HTTP/1.1", "Content-Length: 12"], 12),
        (["POST / HTTP/1.1", "Content-Length: 7", "Content-Length: 7"], 7),
        (["POST / HTTP/1.1", "Content-Length: 7, 7"], 7),
        (["POST / HTTP/1.1", "Transfer-Encoding: chunked"], CHUNKED),
        (["POST / HTTP/1.1", "Transfer-Encoding: Chunked"], CHUNKED),
        (["GET / HTTP/1.0"], NO_BODY),
    ],
)
def test_request_framing(lines: list[str], framing: int) -> None:
    assert parse_request_head(head(*lines)).framing == framing


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (["GET /"], 400),
        (["GET  / HTTP/1.1"], 400),
        (["G(T / HTTP/1.1"], 400),
        (["GET / HTTP/2.0"], 505),
        (["GET / HTTP/1.1", "Content-Length: 3", "Transfer-Encoding: chunked"], 400),
        (["GET / HTTP/1.1", "Content-Length: 3", "Content-Length: 4"], 400),
        (["GET / HTTP/1.1", "Content-Length: -3"], 400),
        (["GET / HTTP/1.1", "Content-Length: 0x10"], 400),
        (["GET / HTTP/1.1", "Transfer-Encoding: gzip, chunked"], 501),
        (["GET / HTTP/1.1", "Transfer-Encoding: chunked, chunked"], 501),
        (["GET / HTTP/1.0", "Transfer-Encoding: chunked"], 400),
        (["GET / HTTP/1.1", "Bad Name: x"], 400),
        (["GET / HTTP/1.1", "Name : x"], 400),
        (["GET / HTTP/1.1", " folded: x"], 400),
        (["GET / HTTP/1.1", "NoColon"], 400),
        (["GET / HTTP/1.1", "X: a\x00b"], 400),
        (["GET / HTTP/1.1", "X: a\nb"], 400),
    ],
)
def test_malformed_or_ambiguous_requests_are_refused(lines: list[str], status: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request_head(head(*lines))
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("method", "lines", "framing"),
    [
        (b"GET", ["HTTP/1.1 200 OK", "Content-Length: 5"], 5),
        (b"HEAD", ["HTTP/1.1 200 OK", "Content-Length: 5"], NO_BODY),
        (b"GET", ["HTTP/1.1 204 No Content"], NO_BODY),
        (b"GET", ["HTTP/1.1 304 Not Modified", "Content-Length: 5"], NO_BODY),
        (b"GET", ["HTTP/1.1 101 Switching Protocols"], NO_BODY),
        (b"GET", ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Length: 5"], CHUNKED),
        (b"GET", ["HTTP/1.1 200 OK", "Transfer-Encoding: gzip"], UNTIL_CLOSE),
        (b"GET", ["HTTP/1.1 200 OK"], UNTIL_CLOSE),
        (b"GET", ["HTTP/1.0 200 OK"], UNTIL_CLOSE),
    ],
)
def test_response_framing(method: bytes, lines: list[str], framing: int) -> None:
    assert response_framing(method, parse_response_head(head(*lines))) == framing


def test_response_status_line_may_omit_the_reason_and_bad_ones_are_refused() -> None:
    assert parse_response_head(head("HTTP/1.1 200")).status == 200
    assert parse_response_head(head("HTTP/1.0 404 Not Found")).reason == b"Not Found"
    for bad in ("HTTP/1.1 20 OK", "ICY 200 OK", "HTTP/1.1 200 OK\x01"):
        with pytest.raises(ProtocolError) as caught:
            parse_response_head(head(bad))
        assert caught.value.status == 502


def decode_chunked(pieces: list[bytes]) -> bytes:
    """Feeds `pieces` (one write each) through a socket and decodes them with copy_chunked."""
    out: list[bytes] = []
    failure: list[Exception] = []

    async def main() -> None:
        left, right = socket.socketpair()
        conn = Conn(right)

        async def sink(data: bytes) -> None:
            out.append(data)

        async def writer() -> None:
            for piece in pieces:
                left.sendall(piece)
                await trio.sleep(0.001)
            left.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            try:
                await copy_chunked(conn, sink, lambda: None)
            except (ProtocolError, PeerClosed) as error:
                failure.append(error)  # re-raised outside the nursery, unwrapped
            finally:
                conn.close()

    trio.run(main)
    if failure:
        raise failure[0]
    return b"".join(out)


def test_chunked_bodies_decode_across_arbitrary_read_boundaries() -> None:
    encoded = (
        chunk(b"hello ") + b"7;ext=1\r\nchunked\r\n" + chunk(b"!") + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    assert decode_chunked([encoded]) == b"hello chunked!"
    assert decode_chunked([bytes([b]) for b in encoded]) == b"hello chunked!"


@pytest.mark.parametrize(
    "encoded",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello world\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
    ],
)
def test_malformed_chunked_bodies_are_refused(encoded: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_chunked([encoded])


def test_a_chunked_body_cut_short_is_a_peer_close() -> None:
    with pytest.raises(PeerClosed):
        decode_chunked([b"5\r\nhel"])
