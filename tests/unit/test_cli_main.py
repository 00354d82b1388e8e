"""The command line itself: help, version, launcher dispatch, and the text helpers."""

from __future__ import annotations

import io
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli_fakes import Cli, base_environ

from waka.cli import launcher
from waka.cli._context import running_waka_command
from waka.cli._output import action, aligned, human_bytes, short_version, table
from waka.cli._parser import build_parser
from waka.cli._times import ago, duration, heroku_time
from waka.cli.main import launcher_call


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(cwd=tmp_path, environ=base_environ(tmp_path))


def test_help_lists_every_command_and_the_daemons(cli: Cli) -> None:
    result = cli.run("help")
    assert result.status == 0
    for name in ("apps:create", "ps:scale", "config:set", "logs", "deploy", "git:remote"):
        assert f"\n    {name}" in result.out
    for daemon in ("up", "server", "agent"):
        assert f"\n  {daemon} " in result.out
    assert cli.run("--help").out == result.out
    assert cli.run().out == result.out


def test_help_for_a_command_shows_its_options(cli: Cli) -> None:
    result = cli.run("help", "logs")
    assert result.status == 0
    assert result.out.startswith("usage: waka logs ")
    assert "--no-color" in result.out
    assert cli.run("logs", "--help").out == result.out


def test_help_for_an_unknown_command_says_so(cli: Cli) -> None:
    result = cli.run("help", "nope")
    assert (result.status, result.err) == (
        1,
        'error: "nope" is not a waka command; "waka help" lists them\n',
    )


def test_version_names_waka_and_python(cli: Cli) -> None:
    result = cli.run("version")
    assert result.status == 0
    assert result.out.startswith("waka/0.1.0 python/3.")
    assert cli.run("--version").out == result.out


@pytest.fixture
def fake_launcher(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Stands in for cli/launcher.py (the lead's), recording what each daemon was given."""
    calls: list[tuple[str, list[str]]] = []
    module = types.ModuleType("waka.cli.launcher")
    for name, status in (("up", 0), ("server", 3), ("agent", 4)):

        def launch(argv: list[str], name: str = name, status: int = status) -> int:
            calls.append((name, argv))
            return status

        setattr(module, name, launch)
    monkeypatch.setitem(sys.modules, "waka.cli.launcher", module)
    return calls


def test_daemons_get_their_arguments_untouched(
    cli: Cli, fake_launcher: list[tuple[str, list[str]]]
) -> None:
    assert cli.run("up", "--port", "7400", "-a", "--help").status == 0
    assert cli.run("server").status == 3
    assert cli.run("agent", "--join", "127.0.0.1:7400").status == 4
    assert fake_launcher == [
        ("up", ["--port", "7400", "-a", "--help"]),
        ("server", []),
        ("agent", ["--join", "127.0.0.1:7400"]),
    ]


@pytest.mark.parametrize(
    ("argv", "call"),
    [
        (["up"], ("up", [])),
        (["--data-dir", "/d", "up", "-v"], ("up", ["--data-dir", "/d", "-v"])),
        (["--data-dir=/d", "agent"], ("agent", ["--data-dir=/d"])),
        (["apps"], None),
        (["apps", "up"], None),
        ([], None),
    ],
)
def test_launcher_calls_are_recognised_before_parsing(
    argv: list[str], call: tuple[str, list[str]] | None
) -> None:
    assert launcher_call(argv) == call


def test_the_running_waka_is_found_by_absolute_path(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "waka"
    assert running_waka_command(str(script), "/usr/bin/python3") == (str(script),)
    assert running_waka_command("/x/waka/cli/main.py", "/py") == ("/py", "-m", "waka.cli.main")


NOW = datetime(2026, 11, 26, 3, 6, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "text"),
    [
        (timedelta(seconds=0), "~ 0s ago"),
        (timedelta(seconds=59), "~ 59s ago"),
        (timedelta(minutes=5, seconds=59), "~ 5m ago"),
        (timedelta(hours=2, minutes=59), "~ 2h ago"),
        (timedelta(days=3, hours=23), "~ 3d ago"),
        (timedelta(seconds=-30), "~ 0s ago"),
    ],
)
def test_ago_uses_the_largest_whole_unit(elapsed: timedelta, text: str) -> None:
    assert ago(NOW - elapsed, NOW) == text


def test_heroku_time_is_utc_with_the_age() -> None:
    moment = datetime(2026, 11, 26, 3, 1, 28, tzinfo=UTC)
    assert heroku_time(moment, NOW) == "2026/11/26 03:01:28 +0000 (~ 5m ago)"
    assert heroku_time(None, NOW) == "unknown"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (9.4, "9s"), (65, "1m 05s"), (3599, "59m 59s"), (7380, "2h 03m")],
)
def test_durations_read_like_a_stopwatch(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (12_345, "12.3 KB"),
        (12_345_678, "12.3 MB"),
        (5 * 10**12, "5000.0 GB"),
    ],
)
def test_sizes_read_in_powers_of_1000(size: int, text: str) -> None:
    assert human_bytes(size) == text


def test_only_git_commits_are_shortened() -> None:
    assert short_version("1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d") == "1a2b3c4"
    assert short_version("my-dir") == "my-dir"


def test_aligned_fields_share_one_value_column() -> None:
    out = io.StringIO()
    aligned(out, [("A", "1"), ("Longer", "2"), ("Empty", "")])
    assert out.getvalue() == "A:      1\nLonger: 2\nEmpty:\n"


def test_table_pads_columns_and_trims_line_ends() -> None:
    out = io.StringIO()
    table(out, [["v10", "x", "end"], ["v9", "longer", ""]])
    assert out.getvalue() == "v10  x       end\nv9   longer\n"


def test_action_reports_done_with_detail_or_marks_failure() -> None:
    out = io.StringIO()
    with action(out, "Doing") as outcome:
        outcome.detail = "v7"
    with pytest.raises(RuntimeError), action(out, "Failing"):
        raise RuntimeError("boom")
    assert out.getvalue() == "Doing... done, v7\nFailing... !\n"


@pytest.mark.parametrize("daemon", ["up", "server"])
def test_a_trusted_proxy_that_is_no_address_stops_the_daemon_before_it_starts(
    daemon: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        getattr(launcher, daemon)(["--trusted-proxy", "127.0.0.1", "--trusted-proxy", "caddy"])
    assert stopped.value.code == 2
    assert "'caddy' is not an IP address or network" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("heroku", "waka"),
    [
        (["releases:rollback", "v3"], ["rollback", "v3"]),
        (["ps:kill", "web.1"], ["ps:stop", "web.1"]),
    ],
)
def test_herokus_other_names_for_a_command_do_the_same(heroku: list[str], waka: list[str]):
    parse = build_parser(io.StringIO(), io.StringIO()).parse_args
    given, meant = parse([*heroku, "-a", "demo"]), parse([*waka, "-a", "demo"])
    assert given.handler == meant.handler
    assert {k: v for k, v in vars(given).items() if k != "command"} == {
        k: v for k, v in vars(meant).items() if k != "command"
    }
