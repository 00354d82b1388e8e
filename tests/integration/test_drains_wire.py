"""Drains over real sockets: syslog over TCP and TLS, logplex-1 over HTTP and HTTPS, retries,
reconnection, and slow or dead drains that must not hold anything else up.

TLS certificates are made per test session with the `openssl` command (Debian package
`openssl`): a throwaway CA, and a server certificate for 127.0.0.1 signed by it.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from waka.controller._drain_policy import Backoff
from waka.controller._drain_url import Drain, new_drain_token
from waka.controller._drains import Drains
from waka.controller._logs import LogFilter, LogHub
from waka.v1.common_pb2 import LogLine

RFC5424 = re.compile(
    rb"^<(?P<pri>\d+)>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) - - (?P<msg>.*)\n$",
    re.DOTALL,
)
FAST = Backoff(base=0.05, cap=0.2)


def line(text: str, app: str = "a", dyno: str = "web.1") -> LogLine:
    return LogLine(time_us=1_800_000_000_000_000, app=app, source="app", dyno=dyno, text=text)


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """RFC 6587 octet counting, parsed independently of the code under test."""
    out = []
    while True:
        count, space, rest = data.partition(b" ")
        if not space or not count.isdigit() or len(rest) < int(count):
            return out, data
        out.append(rest[: int(count)])
        data = rest[int(count) :]


def texts_of(frames: list[bytes]) -> list[str]:
    found = []
    for frame in frames:
        match = RFC5424.match(frame)
        assert match, f"not an RFC 5424 message: {frame!r}"
        found.append(match["msg"].decode())
    return found


async def wait_until(predicate, what: str, within: float = 15.0) -> None:
    """Polls (the HTTP receivers live in threads, so there is no trio event to wait on)."""
    with trio.move_on_after(within):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {within}s waiting for {what}")


# ---------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"openssl {args[0]} failed:\n{result.stderr}"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=waka test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=d,
    )  # fmt: skip
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key")


# ---------------------------------------------------------------- receivers


@dataclass
class SyslogReceiver:
    """A syslog server on loopback: collects frames; `stall` makes it stop reading."""

    port: int = 0
    frames: list[bytes] = field(default_factory=list)
    connections: int = 0
    stall: bool = False
    close_after_frames: int = 0  # > 0: close each connection after this many frames

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        if self.stall:
            await trio.sleep_forever()
        pending, taken = b"", 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with stream:
                while data := await stream.receive_some(65536):
                    got, pending = split_frames(pending + data)
                    self.frames.extend(got)
                    taken += len(got)
                    if self.close_after_frames and taken >= self.close_after_frames:
                        return


@contextlib.asynccontextmanager
async def syslog_receiver(
    certs: Certs | None = None, port: int = 0, **options
) -> AsyncIterator[SyslogReceiver]:
    receiver = SyslogReceiver(**options)
    async with trio.open_nursery() as nursery:
        if certs is None:
            listeners = await nursery.start(trio.serve_tcp, receiver.handle, port)
        else:
            listeners = await nursery.start(
                trio.serve_ssl_over_tcp, receiver.handle, port, certs.server_context()
            )
        sock = listeners[0].socket if certs is None else listeners[0].transport_listener.socket
        receiver.port = sock.getsockname()[1]
        yield receiver
        nursery.cancel_scope.cancel()


@dataclass
class HttpReceiver:
    """An HTTP(S) server in a thread (the stdlib's, not our client's code): records each
    request and answers with the next scripted status (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def delivered(self) -> list[str]:
        with self.lock:
            return [
                text
                for path, headers, body in self.requests
                if headers.get("_status") == "200"
                for text in texts_of(split_frames(body)[0])
            ]


@contextlib.contextmanager
def http_receiver(certs: Certs | None = None, statuses=()) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(statuses=list(statuses))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["_status"] = str(status)
                receiver.requests.append((self.path, headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if certs is not None:
        server.socket = certs.server_context().wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def stream_with_drains(**options) -> AsyncIterator[tuple[LogHub, Drains]]:
    hub = LogHub(tail_buffer=1_000_000)
    drains = Drains(hub.emit, backoff=options.pop("backoff", FAST), **options)
    hub.add_sink(drains.offer)
    async with trio.open_nursery() as nursery:
        await nursery.start(drains.run)
        yield hub, drains
        drains.close()
        nursery.cancel_scope.cancel()


def overflow_lines(hub: LogHub, app: str = "a") -> list[str]:
    return [
        x.text
        for x in hub.history(app, LogFilter(source="waka", dyno="logplex"), 1500)
        if x.text.startswith("Error L10 (output buffer overflow): ")
    ]


# ---------------------------------------------------------------- syslog


def test_syslog_drain_sends_octet_counted_rfc5424_frames_in_order():
    async def main():
        token = new_drain_token()
        async with syslog_receiver() as receiver, stream_with_drains() as (hub, drains):
            drains.set_drains("a", [Drain("1", f"syslog://127.0.0.1:{receiver.port}", token)])
            hub.publish(line(f"line {i}", dyno=f"web.{i % 3 + 1}") for i in range(2000))
            hub.publish([line("not for this drain", app="b")])
            await wait_until(lambda: len(receiver.frames) >= 2000, "2000 frames")
        assert texts_of(receiver.frames) == [f"line {i}" for i in range(2000)]
        first = RFC5424.match(receiver.frames[0])
        assert first is not None
        assert (first["pri"], first["host"], first["app"], first["proc"]) == (
            b"190",
            token.encode(),
            b"app",
            b"web.1",
        )
        assert first["time"] == b"2027-01-15T08:00:00.000000+00:00"
        assert receiver.connections == 1

    trio.run(main)


def test_syslog_tls_drain_verifies_the_receiver_against_the_configured_ca(certs: Certs):
    async def main():
        async with syslog_receiver(certs) as receiver:
            url = f"syslog+tls://127.0.0.1:{receiver.port}"
            async with stream_with_drains(ca_file=str(certs.ca)) as (hub, drains):
                drains.set_drains("a", [Drain("1", url, new_drain_token())])
                hub.publish(line(f"secret {i}") for i in range(100))
                await wait_until(lambda: len(receiver.frames) >= 100, "100 frames over TLS")
            assert texts_of(receiver.frames) == [f"secret {i}" for i in range(100)]

            # Against the system's CAs the test CA is unknown: nothing is sent, and the stream
            # says why, once (Logplex's L14).
            receiver.frames.clear()
            async with stream_with_drains() as (hub, drains):
                drains.set_drains("a", [Drain("1", url, new_drain_token())])
                hub.publish([line("must not leak")])

                def l14() -> list[str]:
                    return [x.text for x in hub.history("a", LogFilter(dyno="logplex"), 10)]

                await wait_until(lambda: l14(), "an L14 line")
                assert l14()[0].startswith("Error L14 (certificate validation error): ")
                assert "unable to get local issuer certificate" in l14()[0]
            assert receiver.frames == []

    trio.run(main)


def test_a_receiver_that_closed_its_connection_gets_the_next_batch_on_a_new_one():
    async def main():
        async with (
            syslog_receiver(close_after_frames=10) as receiver,
            stream_with_drains() as (hub, drains),
        ):
            drains.set_drains("a", [Drain("1", f"syslog://127.0.0.1:{receiver.port}", "d.x")])
            for batch in range(3):
                hub.publish(line(f"{batch}-{i}") for i in range(10))
                await wait_until(lambda b=batch: len(receiver.frames) >= 10 * (b + 1), "frames")
                await trio.sleep(0.05)  # the receiver's close reaches us before the next batch
        assert len(texts_of(receiver.frames)) == 30
        assert receiver.connections == 3

    trio.run(main)


def test_a_refused_syslog_drain_reconnects_with_backoff_once_the_receiver_is_up():
    async def main():
        port = unused_port()
        async with stream_with_drains(max_attempts=1000) as (hub, drains):
            drains.set_drains("a", [Drain("1", f"syslog://127.0.0.1:{port}", "d.x")])
            hub.publish(line(f"early {i}") for i in range(5))
            await wait_until(lambda: drains.info("a")[0].last_error, "a connection failure")
            assert "refused" in drains.info("a")[0].last_error.lower()
            async with syslog_receiver(port=port) as receiver:
                await wait_until(lambda: len(receiver.frames) >= 5, "the early lines")
                hub.publish([line("later")])
                await wait_until(lambda: len(receiver.frames) >= 6, "the later line")
            assert texts_of(receiver.frames) == [*(f"early {i}" for i in range(5)), "later"]
            assert drains.info("a")[0].last_error == ""

    trio.run(main)


# ---------------------------------------------------------------- HTTP


def test_http_drain_posts_logplex_batches_with_the_logplex_headers():
    async def main():
        token = new_drain_token()
        with http_receiver() as receiver:
            url = f"http://user:pw@127.0.0.1:{receiver.port}/drain?app=a"
            async with stream_with_drains(batch_lines=100) as (hub, drains):
                drains.set_drains("a", [Drain("1", url, token)])
                hub.publish(line(f"line {i}") for i in range(250))
                await wait_until(lambda: len(receiver.delivered()) >= 250, "250 lines by HTTP")
        assert receiver.delivered() == [f"line {i}" for i in range(250)]
        path, headers, body = receiver.requests[0]
        assert path == "/drain?app=a"
        assert headers["content-type"] == "application/logplex-1"
        assert headers["logplex-msg-count"] == "100"
        assert headers["logplex-drain-token"] == token
        assert re.fullmatch(r"[0-9A-F]{32}", headers["logplex-frame-id"])
        assert headers["authorization"] == "Basic dXNlcjpwdw=="  # user:pw
        assert headers["host"] == f"127.0.0.1:{receiver.port}"
        assert len(split_frames(body)[0]) == 100 and split_frames(body)[1] == b""
        assert RFC5424.match(split_frames(body)[0][0])["host"] == token.encode()
        assert len({h["logplex-frame-id"] for _, h, _ in receiver.requests}) == 3

    trio.run(main)


def test_https_drain_delivers_over_verified_tls(certs: Certs):
    async def main():
        with http_receiver(certs) as receiver:
            url = f"https://localhost:{receiver.port}/"
            async with stream_with_drains(ca_file=str(certs.ca)) as (hub, drains):
                drains.set_drains("a", [Drain("1", url, new_drain_token())])
                hub.publish(line(f"tls {i}") for i in range(10))
                await wait_until(lambda: len(receiver.delivered()) >= 10, "10 lines by HTTPS")
        assert receiver.delivered() == [f"tls {i}" for i in range(10)]

    trio.run(main)


def test_http_retries_429_and_5xx_with_the_same_frame_and_drops_a_batch_on_4xx():
    async def main():
        with http_receiver(statuses=[503, 429, 200, 400]) as receiver:
            url = f"http://127.0.0.1:{receiver.port}/"
            async with stream_with_drains(batch_lines=5, report_interval=0.05) as (hub, drains):
                drains.set_drains("a", [Drain("1", url, "d.x")])
                hub.publish(line(f"first {i}") for i in range(5))
                await wait_until(lambda: len(receiver.requests) >= 3, "three tries")
                hub.publish(line(f"refused {i}") for i in range(5))
                await wait_until(lambda: overflow_lines(hub), "the L10 line for the 400")
                hub.publish(line(f"after {i}") for i in range(5))
                await wait_until(
                    lambda: sum(t.startswith("after") for t in receiver.delivered()) == 5,
                    "the later batch",
                )
            statuses = [h["_status"] for _, h, _ in receiver.requests]
            frame_ids = [h["logplex-frame-id"] for _, h, _ in receiver.requests]
        assert statuses[:4] == ["503", "429", "200", "400"]
        assert frame_ids[0] == frame_ids[1] == frame_ids[2] != frame_ids[3]
        assert overflow_lines(hub)[0].startswith(
            "Error L10 (output buffer overflow): 5 messages dropped since "
        )
        delivered = receiver.delivered()
        assert delivered[:5] == [f"first {i}" for i in range(5)]
        assert [t for t in delivered if t.startswith("after")] == [f"after {i}" for i in range(5)]
        assert not [t for t in delivered if t.startswith("refused")]

    trio.run(main)


def test_a_refused_http_drain_is_retried_until_the_receiver_answers():
    async def main():
        port = unused_port()
        async with stream_with_drains(max_attempts=1000) as (hub, drains):
            drains.set_drains("a", [Drain("1", f"http://127.0.0.1:{port}/", "d.x")])
            hub.publish([line("waiting")])
            await wait_until(lambda: drains.info("a")[0].last_error, "a connection failure")

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                bodies: list[bytes] = []

                def do_POST(self) -> None:
                    Handler.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args) -> None:
                    pass

            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
            thread.start()
            try:
                await wait_until(lambda: Handler.bodies, "the retried batch")
            finally:
                server.shutdown()
                server.server_close()
                thread.join(10)
        assert texts_of(split_frames(Handler.bodies[0])[0]) == ["waiting"]

    trio.run(main)


# ---------------------------------------------------------------- isolation


def test_slow_and_dead_drains_get_l10_and_do_not_delay_tails_or_other_drains():
    async def main():
        total, chunk = 10_000, 500
        text = "x" * 1000  # enough bytes to fill the stalled receiver's socket buffers
        async with (
            syslog_receiver(stall=True) as stalled,
            syslog_receiver() as healthy,
            stream_with_drains(buffer_lines=2000, report_interval=0.1) as (hub, drains),
        ):
            drains.set_drains(
                "a",
                [
                    Drain("slow", f"syslog://127.0.0.1:{stalled.port}", "d.slow"),
                    Drain("dead", f"syslog://127.0.0.1:{unused_port()}", "d.dead"),
                    Drain("ok", f"syslog://127.0.0.1:{healthy.port}", "d.ok"),
                ],
            )
            _, tail = hub.open_tail("a", LogFilter(source="app"), 0)
            received: list[LogLine] = []

            async def read_tail() -> None:
                while True:
                    batch = await tail.next_batch(100_000)
                    assert batch is not None
                    received.extend(batch)

            def app_frames_at_healthy() -> int:
                return sum(1 for f in healthy.frames if b" app web.1 " in f)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_tail)
                # Steady traffic that the healthy drain and the tail can keep up with, while the
                # other two drains deliver nothing: each chunk must reach both within moments.
                for start in range(0, total, chunk):
                    hub.publish(line(f"{i} {text}") for i in range(start, start + chunk))
                    await wait_until(lambda n=start + chunk: len(received) >= n, "the tail", 5)
                    await wait_until(
                        lambda n=start + chunk: app_frames_at_healthy() >= n, "the drain", 5
                    )
                nursery.cancel_scope.cancel()
            assert [int(x.text.split()[0]) for x in received] == list(range(total))
            await wait_until(lambda: len(overflow_lines(hub)) >= 2, "L10 from slow and dead")
        ok_texts = [t for t in texts_of(healthy.frames) if not t.startswith("Error L10")]
        assert [int(t.split()[0]) for t in ok_texts] == list(range(total))
        assert stalled.connections >= 1

    trio.run(main)
