"""waka logs: the Logplex line format, colour only on a terminal, --json, filters, Ctrl-C."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import (
    TOKEN,
    WAKA_SCRIPT,
    Cli,
    FakePlatform,
    TerminalOutput,
    base_environ,
    serving,
)

from waka.cli._logs import PALETTE, dyno_colour, render
from waka.v1 import common_pb2


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


PLAIN = (
    "2026-11-26T03:01:28.791299+00:00 app[web.1]: Listening on 0.0.0.0:20001\n"
    "2026-11-26T03:01:29.000005+00:00 waka[worker.1]: State changed to up\n"
)


def test_lines_render_as_logplex_writes_them_when_piped(cli: Cli) -> None:
    result = cli.run("logs", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == PLAIN


def test_a_terminal_gets_the_prefix_coloured_by_dyno(cli: Cli) -> None:
    terminal = TerminalOutput()
    assert cli.run("logs", "-a", "demo", stdout=terminal).status == 0
    web = f"\x1b[{dyno_colour('web.1')}m"
    worker = f"\x1b[{dyno_colour('worker.1')}m"
    assert terminal.getvalue() == (
        f"2026-11-26T03:01:28.791299+00:00 {web}app[web.1]:\x1b[0m Listening on 0.0.0.0:20001\n"
        f"2026-11-26T03:01:29.000005+00:00 {worker}waka[worker.1]:\x1b[0m State changed to up\n"
    )


def test_no_color_and_NO_COLOR_keep_a_terminal_plain(cli: Cli) -> None:
    terminal = TerminalOutput()
    cli.run("logs", "-a", "demo", "--no-color", stdout=terminal)
    assert terminal.getvalue() == PLAIN
    cli.environ["NO_COLOR"] = "1"
    terminal = TerminalOutput()
    cli.run("logs", "-a", "demo", stdout=terminal)
    assert terminal.getvalue() == PLAIN


def test_a_dyno_keeps_its_colour_and_colours_come_from_the_palette() -> None:
    names = [f"web.{n}" for n in range(1, 40)]
    colours = {name: dyno_colour(name) for name in names}
    assert all(colour in PALETTE for colour in colours.values())
    assert colours == {name: dyno_colour(name) for name in names}
    assert len(set(colours.values())) > 1


def test_render_keeps_microseconds_exact_far_from_the_epoch() -> None:
    line = common_pb2.LogLine(
        time_us=1_795_000_000_123_457, source="router", dyno="router", text="at=info"
    )
    assert render(line, colour=False) == (
        "2026-11-18T11:06:40.123457+00:00 router[router]: at=info"
    )


def test_json_prints_one_object_per_line(cli: Cli) -> None:
    out = cli.run("logs", "-a", "demo", "--json").out
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [
        {
            "time": "2026-11-26T03:01:28.791299+00:00",
            "source": "app",
            "dyno": "web.1",
            "app": "demo",
            "text": "Listening on 0.0.0.0:20001",
        },
        {
            "time": "2026-11-26T03:01:29.000005+00:00",
            "source": "waka",
            "dyno": "worker.1",
            "app": "demo",
            "text": "State changed to up",
        },
    ]


def test_json_on_a_terminal_has_no_colour_codes(cli: Cli) -> None:
    terminal = TerminalOutput()
    cli.run("logs", "-a", "demo", "--json", stdout=terminal)
    assert "\x1b" not in terminal.getvalue()


def test_filters_and_count_go_to_the_controller(cli: Cli, platform: FakePlatform) -> None:
    assert cli.run("logs", "-a", "demo", "-n", "50", "-s", "app", "-d", "web").status == 0
    request = platform.calls_to("Logs.Tail")[0]
    assert (request.app, request.num, request.follow, request.source, request.dyno) == (
        "demo",
        50,
        False,
        "app",
        "web",
    )


def test_herokus_older_ps_option_filters_by_dyno_too(cli: Cli, platform: FakePlatform) -> None:
    assert cli.run("logs", "-a", "demo", "-p", "router").status == 0
    assert cli.run("logs", "-a", "demo", "--ps", "web.1").status == 0
    assert [r.dyno for r in platform.calls_to("Logs.Tail")] == ["router", "web.1"]


def test_a_negative_count_is_refused(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("logs", "-a", "demo", "-n", "-5")
    assert result.status == 1
    assert "--num must be 0" in result.err
    assert platform.calls == []


class _InterruptedAfterFirstLine(io.StringIO):
    """Output where Ctrl-C arrives while the first line is written, as during a live tail."""

    def write(self, text: str) -> int:
        written = super().write(text)
        raise KeyboardInterrupt
        return written  # pragma: no cover


def test_ctrl_c_ends_a_tail_quietly_and_cancels_it(cli: Cli, platform: FakePlatform) -> None:
    out = _InterruptedAfterFirstLine()
    result = cli.run("logs", "-a", "demo", "-t", stdout=out)
    assert (result.status, result.err) == (0, "")
    assert platform.calls_to("Logs.Tail")[0].follow is True
    assert out.getvalue().startswith("2026-11-26T03:01:28.791299+00:00 app[web.1]:")
    # The fake's tail waits for the client's cancel: this proves the stream was ended.
    assert platform.tail_ended.wait(timeout=10)


def test_sigint_ends_a_real_tail_process_with_exit_0(
    platform: FakePlatform, tmp_path: Path
) -> None:
    """What a user's Ctrl-C does: SIGINT to the installed `waka logs -t`, blocked in the stream."""
    env = base_environ(tmp_path) | {"WAKA_API": platform.address, "WAKA_API_KEY": TOKEN}
    process = subprocess.Popen(
        [str(WAKA_SCRIPT), "logs", "-t", "-a", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # History arrives first; once it is printed the process is waiting for live lines.
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert (first + second) == PLAIN
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=20)
        assert process.stderr is not None
        assert (status, process.stderr.read()) == (0, "")
        assert platform.tail_ended.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
