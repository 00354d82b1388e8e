"""waka apps, apps:create, apps:info, apps:destroy against a fake controller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import TOKEN, Cli, FakePlatform, serving


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


def test_apps_lists_names_sorted_under_a_heading(cli: Cli) -> None:
    result = cli.run("apps")
    assert result.status == 0, result.err
    assert result.out == "=== Apps\nalpha\ndemo\n"


def test_apps_json_has_stable_fields_and_iso_times(cli: Cli) -> None:
    result = cli.run("apps", "--json")
    apps = json.loads(result.out)
    assert [app["name"] for app in apps] == ["alpha", "demo"]
    assert apps[1] == {
        "name": "demo",
        "id": "id-demo",
        "created_at": "2026-11-20T12:00:00.000000+00:00",
        "git_url": "http://127.0.0.1:7401/demo.git",
        "web_url": "http://demo.localhost:7402/",
        "current_release": 3,
        "stack": "host",
    }


def test_apps_says_so_when_there_are_none(cli: Cli, platform: FakePlatform) -> None:
    platform.apps.clear()
    assert cli.run("apps").out == "You have no apps.\n"
    assert cli.run("apps", "--json").out == "[]\n"


def test_every_call_carries_the_bearer_token(cli: Cli, platform: FakePlatform) -> None:
    # The fake answers UNAUTHENTICATED to any other token, so success proves the metadata.
    assert cli.run("apps").status == 0
    assert platform.calls_to("Apps.List")


def test_create_with_a_name_prints_progress_and_urls(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("apps:create", "shiny")
    assert result.status == 0, result.err
    assert result.out == (
        "Creating ⬢ shiny... done\nhttp://shiny.localhost:7402/ | http://127.0.0.1:7401/shiny.git\n"
    )
    assert platform.calls_to("Apps.Create")[0].name == "shiny"


def test_create_without_a_name_asks_for_a_random_one(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("apps:create")
    assert result.out.startswith("Creating app... done, ⬢ sleepy-meadow-4242\n")
    assert platform.calls_to("Apps.Create")[0].name == ""


def test_create_inside_a_repo_adds_the_waka_remote(cli: Cli) -> None:
    cli.git("init", "-q")
    assert cli.run("apps:create", "shiny").status == 0
    assert cli.git("remote", "get-url", "waka") == "http://127.0.0.1:7401/shiny.git"
    helper = cli.git("config", "credential.http://127.0.0.1:7401.helper")
    assert "admin-token" in helper


def test_create_with_no_remote_leaves_the_repo_alone(cli: Cli) -> None:
    cli.git("init", "-q")
    assert cli.run("apps:create", "shiny", "--no-remote").status == 0
    assert cli.git("remote") == ""


def test_create_keeps_an_existing_waka_remote(cli: Cli) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    assert cli.run("apps:create", "shiny").status == 0
    assert cli.git("remote", "get-url", "waka") == "http://127.0.0.1:7401/demo.git"


def test_create_outside_a_repo_just_creates(cli: Cli) -> None:
    result = cli.run("create", "shiny")
    assert result.status == 0, result.err


def test_create_of_a_taken_name_ends_the_line_and_reports(cli: Cli) -> None:
    result = cli.run("apps:create", "demo")
    assert result.status == 1
    assert result.out == "Creating ⬢ demo... !\n"
    assert result.err == "error: Name demo is already taken\n"


def test_info_shows_aligned_fields_with_dyno_counts(cli: Cli) -> None:
    result = cli.run("apps:info", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== demo\n"
        "Git URL: http://127.0.0.1:7401/demo.git\n"
        "Web URL: http://demo.localhost:7402/\n"
        "Stack:   host\n"
        "Release: v3\n"
        "Dynos:   web: 2, worker: 1\n"
        "Created: 2026/11/20 12:00:00 +0000 (~ 5d ago)\n"
    )


def test_info_of_an_app_without_releases_or_dynos(cli: Cli) -> None:
    out = cli.run("info", "-a", "alpha").out
    assert "Release: none\n" in out
    assert "Dynos:   none\n" in out


def test_info_json_includes_dyno_counts(cli: Cli) -> None:
    info = json.loads(cli.run("apps:info", "-a", "demo", "--json").out)
    assert info["name"] == "demo"
    assert info["current_release"] == 3
    assert info["dynos"] == {"web": 2, "worker": 1}
    assert {"git_url", "web_url", "stack", "created_at"} <= info.keys()


def test_destroy_without_confirm_refuses(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("apps:destroy", "demo")
    assert result.status == 1
    assert result.err == "error: To proceed, re-run with --confirm demo\n"
    assert "demo" in platform.apps


def test_destroy_with_a_wrong_confirm_refuses(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("apps:destroy", "-a", "demo", "--confirm", "other")
    assert result.status == 1
    assert result.err == "error: To proceed, re-run with --confirm demo\n"
    assert not platform.calls_to("Apps.Destroy")


def test_destroy_with_confirm_destroys(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("apps:destroy", "demo", "--confirm", "demo")
    assert result.status == 0, result.err
    assert result.out == "Destroying ⬢ demo (including all add-ons)... done\n"
    assert "demo" not in platform.apps
    assert platform.calls_to("Apps.Destroy")[0].confirm == "demo"


def test_destroy_removes_remotes_pointing_at_the_app(cli: Cli) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    cli.git("remote", "add", "origin", "https://example.invalid/code.git")
    assert cli.run("destroy", "--confirm", "demo").status == 0
    assert cli.git("remote").split() == ["origin"]


def test_the_token_comes_from_the_data_dir_when_no_key_is_set(
    platform: FakePlatform, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text(TOKEN + "\n")
    (data / "controller.json").write_text(json.dumps({"api": platform.address, "http": "x"}))
    cli = Cli.against(platform, tmp_path)
    del cli.environ["WAKA_API_KEY"]
    del cli.environ["WAKA_API"]
    assert cli.run("--data-dir", str(data), "apps").status == 0
    assert cli.run("apps", "--data-dir", str(data)).status == 0
    cli.environ["WAKA_DATA_DIR"] = str(data)
    assert cli.run("apps").status == 0


def browser_script(tmp_path: Path, exit_code: int = 0) -> tuple[str, Path]:
    """A $BROWSER that writes down the address it was given."""
    seen = tmp_path / "opened.txt"
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}\nexit {exit_code}\n')
    script.chmod(0o755)
    return str(script), seen


def test_open_starts_the_browser_on_the_apps_address_with_a_path(cli: Cli, tmp_path: Path):
    browser, seen = browser_script(tmp_path)
    cli.environ["BROWSER"] = browser
    result = cli.run("open", "/admin?tab=1", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == "Opening http://demo.localhost:7402/admin?tab=1...\n"
    assert seen.read_text() == "http://demo.localhost:7402/admin?tab=1"


def test_open_without_a_browser_prints_the_address(cli: Cli):
    cli.environ.pop("BROWSER", None)
    cli.environ.pop("DISPLAY", None)
    result = cli.run("apps:open", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == "http://demo.localhost:7402/\n"


def test_open_says_when_the_browser_fails(cli: Cli, tmp_path: Path):
    browser, _ = browser_script(tmp_path, exit_code=3)
    cli.environ["BROWSER"] = browser
    result = cli.run("open", "-a", "demo")
    assert result.status == 1
    assert result.err == f"error: the browser {browser} exited 3\n"
    cli.environ["BROWSER"] = str(tmp_path / "no-such-browser")
    missing = cli.run("open", "-a", "demo")
    assert missing.status == 1 and "cannot start the browser" in missing.err, missing.err


def test_open_of_an_unknown_app_names_it(cli: Cli):
    result = cli.run("open", "-a", "nope")
    assert result.status == 1
    assert "nope" in result.err, result.err
