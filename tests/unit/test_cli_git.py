"""App inference from the "waka" git remote, git:remote, and the git credential helper."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import TOKEN, Cli, FakePlatform, serving

from waka.cli._git import app_from_git_url


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


@pytest.mark.parametrize(
    ("url", "app"),
    [
        ("http://127.0.0.1:7401/demo.git", "demo"),
        ("http://host:7401/demo.git/", "demo"),
        ("https://waka.example.com/git/my-app.git", "my-app"),
        ("http://127.0.0.1:7401/demo", None),
        ("http://127.0.0.1:7401/.git", None),
        ("", None),
    ],
)
def test_app_from_git_url_reads_the_last_path_segment(url: str, app: str | None) -> None:
    assert app_from_git_url(url) == app


def test_app_comes_from_the_waka_remote(cli: Cli, platform: FakePlatform) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    result = cli.run("config")
    assert result.status == 0, result.err
    assert platform.calls_to("Config.Get")[0].app == "demo"


def test_app_comes_from_the_remote_in_a_subdirectory(cli: Cli, platform: FakePlatform) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    (cli.cwd / "src").mkdir()
    cli.cwd = cli.cwd / "src"
    assert cli.run("ps").status == 0
    assert platform.calls_to("Dynos.List")[0].app == "demo"


def test_dash_a_wins_over_the_remote(cli: Cli, platform: FakePlatform) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    assert cli.run("config", "-a", "alpha").status == 0
    assert platform.calls_to("Config.Get")[0].app == "alpha"


NO_APP = 'error: No app specified. Use -a APP, or run inside a repo with a "waka" git remote.\n'


def test_no_app_outside_a_repo_says_how_to_name_one(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("ps")
    assert (result.status, result.err) == (1, NO_APP)
    assert platform.calls == []


def test_no_app_in_a_repo_without_the_remote(cli: Cli) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "origin", "http://127.0.0.1:7401/demo.git")
    result = cli.run("releases")
    assert (result.status, result.err) == (1, NO_APP)


def test_a_remote_url_without_an_app_is_named_in_the_error(cli: Cli) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/")
    result = cli.run("ps")
    assert result.status == 1
    assert 'the "waka" git remote (http://127.0.0.1:7401/) does not name an app' in result.err


def test_git_remote_adds_the_remote_and_credential_helper(cli: Cli) -> None:
    cli.git("init", "-q")
    result = cli.run("git:remote", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == "set git remote waka to http://127.0.0.1:7401/demo.git\n"
    assert cli.git("remote", "get-url", "waka") == "http://127.0.0.1:7401/demo.git"
    base = "credential.http://127.0.0.1:7401"
    assert cli.git("config", "--local", f"{base}.helper").startswith("!")
    assert cli.git("config", "--local", f"{base}.username") == "waka"


def test_git_remote_updates_an_existing_remote_once(cli: Cli) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "production", "http://old-host/demo.git")
    assert cli.run("git:remote", "-a", "demo", "-r", "production").status == 0
    assert cli.run("git:remote", "-a", "demo", "-r", "production").status == 0
    assert cli.git("remote", "get-url", "production") == "http://127.0.0.1:7401/demo.git"
    helpers = cli.git("config", "--get-all", "credential.http://127.0.0.1:7401.helper")
    assert len(helpers.splitlines()) == 1


def test_git_remote_passes_an_explicit_data_dir_to_the_helper(cli: Cli, tmp_path: Path) -> None:
    cli.git("init", "-q")
    data = tmp_path / "my data"
    data.mkdir()
    (data / "admin-token").write_text(TOKEN)
    assert cli.run("git:remote", "-a", "demo", "--data-dir", str(data)).status == 0
    del cli.environ["WAKA_API_KEY"]
    cli.environ["WAKA_DATA_DIR"] = str(tmp_path / "elsewhere")
    filled = _git_credential_fill(cli)
    assert f"password={TOKEN}\n" in filled.stdout, filled.stderr


def test_git_remote_outside_a_repo_says_so(cli: Cli) -> None:
    result = cli.run("git:remote", "-a", "demo")
    assert result.status == 1
    assert "is not inside a git repository" in result.err


def test_git_remote_for_an_unknown_app_reports_not_found(cli: Cli) -> None:
    cli.git("init", "-q")
    result = cli.run("git:remote", "-a", "nope")
    assert (result.status, result.err) == (1, "error: Couldn't find that app: nope\n")
    assert cli.git("remote") == ""


def _git_credential_fill(cli: Cli) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "credential", "fill"],
        input="url=http://127.0.0.1:7401/demo.git\n\n",
        cwd=cli.cwd,
        env=cli.environ | {"GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _use_data_dir_token(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text(TOKEN + "\n")
    cli.environ["WAKA_DATA_DIR"] = str(data)
    del cli.environ["WAKA_API_KEY"]


def test_git_asks_the_configured_helper_and_gets_the_token(cli: Cli, tmp_path: Path) -> None:
    """The whole loop with real git and the real waka script: no prompt, the data dir's token."""
    cli.git("init", "-q")
    _use_data_dir_token(cli, tmp_path)
    assert cli.run("git:remote", "-a", "demo").status == 0
    filled = _git_credential_fill(cli)
    assert filled.returncode == 0, filled.stderr
    assert "username=waka\n" in filled.stdout
    assert f"password={TOKEN}\n" in filled.stdout


def test_the_helper_answers_only_get_and_prefers_waka_api_key(cli: Cli, tmp_path: Path) -> None:
    cli.git("init", "-q")
    _use_data_dir_token(cli, tmp_path)
    assert cli.run("git:remote", "-a", "demo").status == 0
    cli.environ["WAKA_API_KEY"] = "waka_from_the_environment"
    filled = _git_credential_fill(cli)
    assert "password=waka_from_the_environment\n" in filled.stdout, filled.stderr
    helper = cli.git("config", "credential.http://127.0.0.1:7401.helper")
    stored = subprocess.run(
        ["sh", "-c", helper.removeprefix("!") + " store"],
        input="url=http://127.0.0.1:7401\n\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (stored.returncode, stored.stdout) == (0, "")


def test_a_relative_data_dir_is_made_absolute_for_the_helper(cli: Cli) -> None:
    cli.git("init", "-q")
    assert cli.run("git:remote", "-a", "demo", "--data-dir", "state").status == 0
    (cli.cwd / "state").mkdir()
    (cli.cwd / "state" / "admin-token").write_text(TOKEN)
    del cli.environ["WAKA_API_KEY"]
    cli.cwd = cli.cwd / "state"  # git runs the helper from elsewhere
    filled = _git_credential_fill(cli)
    assert f"password={TOKEN}\n" in filled.stdout, filled.stderr
