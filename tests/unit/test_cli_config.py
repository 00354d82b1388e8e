"""waka config, config:get, config:set, config:unset, and reading KEY=value arguments."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from test_cli_fakes import Cli, FakePlatform, serving

from waka.cli._config import parse_assignment, parse_assignments
from waka.cli._errors import CliError


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("KEY=value", ("KEY", "value")),
        ("KEY=", ("KEY", "")),
        ("URL=postgres://u:p@h/db?sslmode=require", ("URL", "postgres://u:p@h/db?sslmode=require")),
        ("EQ==", ("EQ", "=")),
        ("B64=YWJj==", ("B64", "YWJj==")),
        ("SPACED=a b  c", ("SPACED", "a b  c")),
        ("lower_case=1", ("lower_case", "1")),
    ],
)
def test_assignments_split_at_the_first_equals(text: str, pair: tuple[str, str]) -> None:
    assert parse_assignment(text) == pair


@pytest.mark.parametrize("text", ["KEY", "=value", "", "="])
def test_bad_assignments_are_named(text: str) -> None:
    with pytest.raises(CliError) as raised:
        parse_assignment(text)
    assert raised.value.message == f'invalid config var "{text}": expected KEY=value'


def test_a_key_given_twice_keeps_the_last_value() -> None:
    assert parse_assignments(["A=1", "B=2", "A=3"]) == {"A": "3", "B": "2"}


def test_config_lists_aligned_sorted_vars(cli: Cli) -> None:
    result = cli.run("config", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== demo Config Vars\nDATABASE_URL: postgres://db/demo\nSECRET:       s3cr=t\n"
    )


def test_config_shell_quotes_values(cli: Cli, platform: FakePlatform) -> None:
    platform.config["demo"]["GREETING"] = "hello world's"
    out = cli.run("config", "-a", "demo", "--shell").out
    lines = out.splitlines()
    assert lines[0] == "DATABASE_URL=postgres://db/demo"
    assert shlex.split(lines[1]) == ["GREETING=hello world's"]
    assert lines[2] == "SECRET=s3cr=t"


def test_config_json_is_an_object(cli: Cli) -> None:
    config = json.loads(cli.run("config", "-a", "demo", "--json").out)
    assert config == {"DATABASE_URL": "postgres://db/demo", "SECRET": "s3cr=t"}


def test_config_of_an_app_without_vars(cli: Cli) -> None:
    assert cli.run("config", "-a", "alpha").out == "⬢ alpha has no config vars\n"
    assert cli.run("config", "-a", "alpha", "--json").out == "{}\n"


def test_config_get_prints_the_value_alone(cli: Cli) -> None:
    assert cli.run("config:get", "SECRET", "-a", "demo").out == "s3cr=t\n"
    assert cli.run("config:get", "MISSING", "-a", "demo").out == "\n"


def test_config_set_sends_values_and_names_the_release(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("config:set", "-a", "demo", "URL=a=b", "EMPTY=")
    assert result.status == 0, result.err
    assert result.out == (
        "Setting URL, EMPTY and restarting ⬢ demo... done, v7\nURL:   a=b\nEMPTY:\n"
    )
    update = platform.calls_to("Config.Update")[0]
    assert dict(update.set) == {"URL": "a=b", "EMPTY": ""}
    assert list(update.unset) == []


def test_config_set_with_bad_syntax_calls_nothing(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("config:set", "-a", "demo", "GOOD=1", "BAD")
    assert (result.status, result.err) == (
        1,
        'error: invalid config var "BAD": expected KEY=value\n',
    )
    assert platform.calls == []


def test_config_set_refused_by_the_controller(cli: Cli, platform: FakePlatform) -> None:
    platform.failures["Config.Update"] = (
        grpc.StatusCode.INVALID_ARGUMENT,
        'invalid config var name "1BAD": use letters, digits and _',
    )
    result = cli.run("config:set", "-a", "demo", "1BAD=x")
    assert result.status == 1
    assert result.out == "Setting 1BAD and restarting ⬢ demo... !\n"
    assert result.err == 'error: invalid config var name "1BAD": use letters, digits and _\n'


def test_config_unset_sends_names_and_names_the_release(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("config:unset", "-a", "demo", "SECRET", "DATABASE_URL")
    assert result.status == 0, result.err
    assert result.out == "Unsetting SECRET, DATABASE_URL and restarting ⬢ demo... done, v7\n"
    assert list(platform.calls_to("Config.Update")[0].unset) == ["SECRET", "DATABASE_URL"]
    assert platform.config["demo"] == {}
