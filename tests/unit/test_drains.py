"""Drain policies without sockets: the wire format, URL rules, backoff, status meanings, the
bounded buffer, and the worker's retry rules (with a fake sender and trio's virtual clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from waka.controller._drain_format import frame, header_field, message, priority
from waka.controller._drain_policy import Backoff, DrainBuffer, Outcome, status_outcome
from waka.controller._drain_transport import Batch, CertificateInvalid, DrainUnavailable
from waka.controller._drain_url import (
    Drain,
    check_drain_count,
    new_drain_token,
    parse_drain_url,
)
from waka.controller._drains import Drains, DrainWorker
from waka.controller._errors import InvalidInput
from waka.v1.common_pb2 import LogLine

T0_US = 1_800_000_000_000_000  # 2027-01-15T08:00:00+00:00
TOKEN = "d.01234567-89ab-cdef-0123-456789abcdef"


def line(text="hello", source="app", dyno="web.1", t=T0_US, app="a"):
    return LogLine(time_us=t, app=app, source=source, dyno=dyno, text=text)


# ---------------------------------------------------------------- wire format


def test_frame_is_logplex_rfc5424_with_octet_count_including_the_newline():
    framed = frame(line("State changed from starting to up", dyno="web.3", t=T0_US + 42), TOKEN)
    body = (
        f"<190>1 2027-01-15T08:00:00.000042+00:00 {TOKEN} app web.3 - - "
        "State changed from starting to up\n"
    ).encode()
    assert framed == str(len(body)).encode() + b" " + body


@pytest.mark.parametrize(
    ("source", "dyno", "text", "pri"),
    [
        ("app", "web.1", "x", 190),  # local7.info
        ("router", "router", "at=info", 158),  # local3.info
        ("waka", "api", "Release v2", 134),  # local0.info
        ("build", "b-1", "-----> Python", 134),
        ("waka", "logplex", "Error L10 (output buffer overflow): 3 ...", 172),  # local5.warning
    ],
)
def test_priority_follows_logplex_facilities(source, dyno, text, pri):
    assert priority(line(text, source=source, dyno=dyno)) == pri


def test_header_fields_are_printable_ascii_without_spaces_and_never_empty():
    assert header_field("web 1\té", 128) == "web_1__"
    assert header_field("", 48) == "-"
    assert header_field("x" * 60, 48) == "x" * 48


def test_message_text_keeps_unicode_and_multibyte_length_is_counted_in_bytes():
    framed = frame(line("héllo ✓"), TOKEN)
    count, _, body = framed.partition(b" ")
    assert int(count) == len(body)
    assert body.endswith("héllo ✓\n".encode())
    assert message(line("ends\n"), TOKEN).endswith(b"ends\n")


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("syslog://logs.example.com", ("syslog", "logs.example.com", 601, False, "/")),
        ("syslog+tls://logs.example.com:6514", ("syslog+tls", "logs.example.com", 6514, True, "/")),
        ("SYSLOG://10.0.0.1:514/", ("syslog", "10.0.0.1", 514, False, "/")),
        ("https://example.com/drain?x=1", ("https", "example.com", 443, True, "/drain?x=1")),
        ("http://[::1]:8080", ("http", "::1", 8080, False, "/")),
    ],
)
def test_good_drain_urls(url, expected):
    target = parse_drain_url(url)
    assert (target.scheme, target.host, target.port, target.tls, target.target) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "needs a URL"),
        ("ftp://example.com", "the scheme must be syslog://, syslog+tls://, http:// or https://"),
        ("example.com:514", "the scheme must be"),
        ("syslog://", "names no host"),
        ("syslog://exa mple.com", "spaces"),
        ("syslog://bad_host!:514", "not a valid host name"),
        ("syslog://example.com:99999", "port must be a number from 1 to 65535"),
        ("syslog://example.com:0", "port must be a number from 1 to 65535"),
        ("syslog://example.com:http", "port must be a number"),
        ("syslog://example.com/path", "no path or query"),
        ("syslog://user:pw@example.com", "no user name or password"),
        ("https://example.com/#frag", "no #fragment"),
    ],
)
def test_bad_drain_urls_say_what_is_wrong(url, complaint):
    with pytest.raises(InvalidInput) as raised:
        parse_drain_url(url)
    assert complaint in str(raised.value)


def test_basic_auth_comes_from_the_url_and_is_redacted_when_shown():
    target = parse_drain_url("https://user:p%40ss@example.com:8443/logs")
    assert (target.username, target.password) == ("user", "p@ss")
    assert target.redacted() == "https://user:***@example.com:8443/logs"
    assert target.host_header == "example.com:8443"


def test_tokens_and_the_five_drain_limit():
    token = new_drain_token()
    assert token.startswith("d.") and len(token) == 38
    check_drain_count(4)
    with pytest.raises(InvalidInput, match="at most 5 drains"):
        check_drain_count(5)
    drains = Drains(lambda *a, **k: None)
    six = [Drain(str(i), "syslog://example.com", new_drain_token()) for i in range(6)]
    with pytest.raises(InvalidInput, match="at most 5 drains"):
        drains.set_drains("a", six)
    with pytest.raises(InvalidInput, match="scheme"):
        drains.set_drains("a", [Drain("x", "gopher://example.com", TOKEN)])


# ---------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("failures", "rng", "delay"),
    [
        (0, 0.5, 0.0),
        (1, 0.0, 0.25),
        (1, 1.0, 0.5),
        (2, 1.0, 1.0),
        (4, 0.0, 2.0),
        (8, 1.0, 60.0),  # 64 s, capped
        (200, 0.0, 30.0),
    ],
)
def test_backoff_is_exponential_capped_and_half_jittered(failures, rng, delay):
    assert Backoff(base=0.5, cap=60.0, rng=lambda: rng).delay(failures) == delay


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (204, Outcome.SENT),
        (400, Outcome.DROP),
        (401, Outcome.DROP),
        (404, Outcome.DROP),
        (413, Outcome.DROP),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (301, Outcome.RETRY),
    ],
)
def test_status_outcomes_follow_logplex(status, outcome):
    assert status_outcome(status) is outcome


def test_buffer_drops_its_oldest_lines_and_remembers_when_loss_began():
    async def main():
        now = [1_800_000_000.0]
        buffer = DrainBuffer(3, lambda: now[0])
        buffer.extend(line(str(i)) for i in range(2))
        now[0] += 5
        buffer.extend(line(str(i)) for i in range(2, 6))
        assert [x.text for x in await buffer.take(10)] == ["3", "4", "5"]
        assert buffer.take_loss() == (3, 1_800_000_005_000_000)
        assert buffer.take_loss() is None

    trio.run(main)


# ---------------------------------------------------------------- the worker's rules


class FakeSender:
    """Plays a script of outcomes (an Outcome, or an exception to raise) and records batches."""

    def __init__(self, script):
        self.script = list(script)
        self.batches: list[Batch] = []
        self.closed = False

    async def send(self, batch: Batch) -> Outcome:
        self.batches.append(batch)
        step = self.script.pop(0) if self.script else Outcome.SENT
        if isinstance(step, Exception):
            raise step
        return step

    async def aclose(self) -> None:
        self.closed = True


def run_worker(script, lines, *, buffer_lines=100, max_attempts=3):
    """Runs a worker over `lines` in virtual time; returns (sender, worker, sleeps, emitted)."""
    sender = FakeSender(script)
    sleeps: list[float] = []
    emitted: list[str] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await trio.sleep(seconds)

    worker = DrainWorker(
        "a",
        Drain("d1", "https://example.com/", TOKEN),
        sender,
        emitted.append,
        clock=lambda: 1_800_000_000.0,
        sleep=sleep,
        backoff=Backoff(base=1.0, cap=8.0, rng=lambda: 1.0),
        buffer_lines=buffer_lines,
        batch_lines=10,
        max_attempts=max_attempts,
        report_interval=0.3,
    )

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            worker.offer(lines)
            await trio.sleep(1000)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sender, worker, sleeps, emitted


def test_429_and_5xx_are_retried_with_backoff_with_the_same_frame_id():
    sender, worker, sleeps, emitted = run_worker(
        [Outcome.RETRY, Outcome.RETRY, Outcome.SENT], [line("x")]
    )
    assert len(sender.batches) == 3
    assert len({b.frame_id for b in sender.batches}) == 1
    assert sleeps == [1.0, 2.0]
    assert worker.delivered == 1 and emitted == []
    assert sender.closed


def test_a_4xx_drops_the_batch_at_once_and_the_next_batch_goes_without_delay():
    sender, worker, sleeps, emitted = run_worker([Outcome.DROP], [line(str(i)) for i in range(15)])
    assert [len(b.lines) for b in sender.batches] == [10, 5]
    assert sleeps == [0.3]  # only the L10 report's gathering moment
    assert worker.delivered == 5
    assert emitted == [
        "Error L10 (output buffer overflow): 10 messages dropped since "
        "2027-01-15T08:00:00.000000+00:00."
    ]


def test_connection_errors_give_up_a_batch_after_max_attempts_and_backoff_carries_on():
    refused = DrainUnavailable("Connection refused")
    sender, worker, sleeps, emitted = run_worker(
        [refused, refused, refused, refused, Outcome.SENT], [line(str(i)) for i in range(15)]
    )
    # Batch 1: three tries then lost. Batch 2: waits 8 s (4 failures so far), fails, waits, sent.
    assert [len(b.lines) for b in sender.batches] == [10, 10, 10, 5, 5]
    assert [s for s in sleeps if s != 0.3] == [1.0, 2.0, 4.0, 8.0]
    assert worker.delivered == 5
    assert emitted[0].startswith("Error L10 (output buffer overflow): 10 messages dropped since")


def test_a_certificate_that_does_not_verify_is_reported_once_as_l14():
    bad = CertificateInvalid("certificate verify failed: unable to get local issuer certificate")
    _, _, _, emitted = run_worker([bad, bad, Outcome.SENT], [line("x")])
    assert emitted == [
        "Error L14 (certificate validation error): "
        "certificate verify failed: unable to get local issuer certificate"
    ]


def test_overflow_is_reported_once_per_interval_and_reports_do_not_feed_themselves():
    async def main():
        emitted: list[str] = []
        blocked = trio.Event()

        class StuckSender(FakeSender):
            async def send(self, batch):
                await blocked.wait()
                return Outcome.SENT

        worker = DrainWorker(
            "a",
            Drain("d1", "syslog://example.com", TOKEN),
            StuckSender([]),
            emitted.append,
            clock=lambda: 1_800_000_000.0,
            sleep=trio.sleep,
            backoff=Backoff(),
            buffer_lines=5,
            batch_lines=1,
            report_interval=2.0,
        )

        def emit_into_stream(text: str) -> None:
            emitted.append(text)
            worker.offer([line(text, source="waka", dyno="logplex")])  # as the hub would

        worker._emit = emit_into_stream
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.sleep(0.1)
            worker.offer([line(str(i)) for i in range(20)])
            await trio.sleep(0.1)  # the sender takes one line, and is stuck with it
            worker.offer([line(str(i)) for i in range(20, 23)])
            assert len(worker.buffer) == 5
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
        # 23 lines for a buffer of 5 and a stuck sender: 17 dropped, one report. The report line,
        # arriving at a full buffer, did not displace a line (which would make another report).
        assert emitted == [
            "Error L10 (output buffer overflow): 17 messages dropped since "
            "2027-01-15T08:00:00.000000+00:00."
        ]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_set_drains_starts_new_stops_removed_and_keeps_unchanged_drains():
    async def main():
        drains = Drains(lambda *a, **k: None)
        first = Drain("1", "syslog://127.0.0.1:9", TOKEN)
        second = Drain("2", "https://127.0.0.1:9/", TOKEN)
        drains.set_drains("a", [first])
        async with trio.open_nursery() as nursery:
            await nursery.start(drains.run)
            (kept,) = drains._workers["a"]
            drains.set_drains("a", [first, second])
            assert drains._workers["a"][0] is kept
            assert [i.id for i in drains.info("a")] == ["1", "2"]
            drains.set_drains("a", [second])
            assert kept.scope.cancel_called
            drains.set_drains("a", [])
            assert drains.info("a") == []
            drains.offer([line("nobody listens")])
            nursery.cancel_scope.cancel()

    trio.run(main)
