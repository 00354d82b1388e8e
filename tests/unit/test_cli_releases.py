"""waka releases (Heroku's table), releases:info, builds and builds:info."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import Cli, FakePlatform, serving

from waka.cli._errors import CliError
from waka.cli._releases import parse_version


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


def test_releases_table_is_newest_first_with_failed_status(cli: Cli) -> None:
    result = cli.run("releases", "-a", "demo")
    assert result.status == 0, result.err
    when = "2026/11/26 03:01:28 +0000 (~ 5m ago)"
    assert result.out == (
        "=== demo Releases - Current: v3\n"
        f"v4  Deploy 9f8e7d6 (failed)  admin  {when}\n"
        f"v3  Set SECRET config vars   admin  {when}\n"
        f"v2  Deploy 1a2b3c4           admin  {when}\n"
        f"v1  Initial release          admin  {when}\n"
    )


def test_releases_num_limits_the_request_and_the_table(cli: Cli, platform: FakePlatform) -> None:
    out = cli.run("releases", "-a", "demo", "-n", "2").out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["v4", "v3"]
    assert platform.calls_to("Releases.List")[0].limit == 2


def test_releases_json_shape(cli: Cli) -> None:
    releases = json.loads(cli.run("releases", "-a", "demo", "--json").out)
    assert [release["version"] for release in releases] == [4, 3, 2, 1]
    assert releases[0] == {
        "version": 4,
        "description": "Deploy 9f8e7d6",
        "user": "admin",
        "created_at": "2026-11-26T03:01:28.000000+00:00",
        "status": "failed",
        "current": False,
        "slug_sha256": "ab" * 32,
        "slug_size": 12_345_678,
        "process_types": {"web": "python app.py", "worker": "python worker.py"},
        "config_names": ["DATABASE_URL", "SECRET"],
        "buildpacks": ["python"],
        "stack": "host",
    }


def test_releases_of_an_app_without_any(cli: Cli) -> None:
    assert cli.run("releases", "-a", "alpha").out == "⬢ alpha has no releases yet\n"


def test_release_info_defaults_to_the_current_release(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("releases:info", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== Release v3\n"
        "Change:        Set SECRET config vars\n"
        "By:            admin\n"
        "When:          2026/11/26 03:01:28 +0000 (~ 5m ago)\n"
        "Status:        succeeded\n"
        "Current:       yes\n"
        f"Slug:          {'ab' * 32} (12.3 MB)\n"
        "Stack:         host\n"
        "Buildpacks:    python\n"
        "Process types: web, worker\n"
        "Config:        DATABASE_URL, SECRET\n"
    )
    assert platform.calls_to("Releases.Get")[0].version == 3


def test_release_info_of_a_named_version(cli: Cli, platform: FakePlatform) -> None:
    release = json.loads(cli.run("releases:info", "v4", "-a", "demo", "--json").out)
    assert (release["version"], release["status"]) == (4, "failed")
    assert platform.calls_to("Releases.Get")[0].version == 4


def test_release_info_of_a_missing_version_reports_not_found(cli: Cli) -> None:
    result = cli.run("releases:info", "v9", "-a", "demo")
    assert (result.status, result.err) == (1, "error: Couldn't find release v9\n")


def test_release_info_without_releases_says_so(cli: Cli) -> None:
    result = cli.run("releases:info", "-a", "alpha")
    assert (result.status, result.err) == (1, "error: ⬢ alpha has no releases yet\n")


@pytest.mark.parametrize(("text", "version"), [("v3", 3), ("3", 3), ("v12", 12)])
def test_release_versions_read_with_or_without_v(text: str, version: int) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["v", "v0", "three", "v3.1", "-1", ""])
def test_bad_release_versions_are_named(text: str) -> None:
    with pytest.raises(CliError, match=f'invalid release "{text}": expected vN'):
        parse_version(text)


def test_builds_table_newest_first_with_durations(cli: Cli) -> None:
    result = cli.run("builds", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== demo Builds\n"
        "b-bad  failed     mydir    2026/11/26 03:02:00 +0000 (~ 4m ago)  9s\n"
        "b-ok   succeeded  1a2b3c4  2026/11/26 03:00:00 +0000 (~ 6m ago)  1m 05s\n"
    )


def test_builds_json_shape(cli: Cli) -> None:
    builds = json.loads(cli.run("builds", "-a", "demo", "--json").out)
    assert [build["id"] for build in builds] == ["b-bad", "b-ok"]
    assert builds[1] == {
        "id": "b-ok",
        "app": "demo",
        "status": "succeeded",
        "source_version": "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d",
        "node": "node-1",
        "created_at": "2026-11-26T03:00:00.000000+00:00",
        "finished_at": "2026-11-26T03:01:05.000000+00:00",
        "duration_seconds": 65.0,
        "release": 2,
        "slug_sha256": "cd" * 32,
        "slug_size": 2_000_000,
        "buildpacks": ["python"],
        "error": "",
    }


def test_build_info_shows_the_error_of_a_failed_build(cli: Cli) -> None:
    result = cli.run("builds:info", "b-bad", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== Build b-bad\n"
        "Status:     failed\n"
        "Source:     mydir\n"
        "Node:       node-1\n"
        "Created:    2026/11/26 03:02:00 +0000 (~ 4m ago)\n"
        "Finished:   2026/11/26 03:02:09 +0000 (~ 4m ago)\n"
        "Duration:   9s\n"
        "Release:    none\n"
        "Slug:\n"
        "Buildpacks:\n"
        "Error:      no buildpack detected this app\n"
    )


def test_builds_of_an_app_without_any(cli: Cli) -> None:
    assert cli.run("builds", "-a", "alpha").out == "⬢ alpha has no builds yet\n"
