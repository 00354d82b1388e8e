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


def editor(tmp_path: Path, body: str, exit_code: int = 0) -> str:
    """An $EDITOR that rewrites the file it is given with `body` (a Python expression of the
    old text) and exits with `exit_code`."""
    script = tmp_path / "edit.py"
    script.write_text(
        "import sys, pathlib\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "text = path.read_text()\n"
        f"path.write_text({body})\n"
        f"sys.exit({exit_code})\n"
    )
    return f"python3 {script}"


def test_config_edit_shows_the_changes_and_applies_them_in_one_update(
    cli: Cli, platform: FakePlatform, tmp_path: Path
) -> None:
    cli.environ["EDITOR"] = editor(
        tmp_path,
        "text.replace('SECRET', 'OLD_SECRET_GONE').replace('s3cr=t', 'x') + 'NEW=\"a b\"\\n'",
    )
    result = cli.run("config:edit", "-a", "demo", stdin="y\n")
    assert result.status == 0, result.err
    assert result.out == (
        "+ OLD_SECRET_GONE=x\n"
        "+ NEW='a b'\n"
        "- SECRET\n"
        "Update config vars on ⬢ demo? [y/N] "
        "Updating config vars and restarting ⬢ demo... done, v7\n"
    )
    assert len(platform.calls_to("Config.Update")) == 1
    assert platform.config["demo"] == {
        "DATABASE_URL": "postgres://db/demo",
        "OLD_SECRET_GONE": "x",
        "NEW": "a b",
    }


def test_config_edit_changes_nothing_when_declined_unchanged_or_the_editor_fails(
    cli: Cli, platform: FakePlatform, tmp_path: Path
) -> None:
    cli.environ["EDITOR"] = editor(tmp_path, "text.replace('postgres://db/demo', 'other')")
    declined = cli.run("config:edit", "-a", "demo", stdin="\n")
    assert declined.status == 1 and "config vars not changed" in declined.err
    assert "~ DATABASE_URL=other" in declined.out
    cli.environ["EDITOR"] = editor(tmp_path, "text")
    assert cli.run("config:edit", "-a", "demo").out == "No changes to config vars\n"
    cli.environ["EDITOR"] = editor(tmp_path, "''", exit_code=3)
    failed = cli.run("config:edit", "-a", "demo")
    assert failed.status == 1 and "exited 3: nothing changed" in failed.err, failed.err
    cli.environ["EDITOR"] = editor(tmp_path, "text + 'not a variable\\n'")
    broken = cli.run("config:edit", "-a", "demo", "--yes")
    assert broken.status == 1 and "the edited config line 3" in broken.err, broken.err
    kept = Path(broken.err.rsplit("your edit is in ", 1)[1].strip())
    assert "not a variable" in kept.read_text()
    kept.unlink()
    assert not platform.calls_to("Config.Update")
    assert platform.config["demo"]["DATABASE_URL"] == "postgres://db/demo"
