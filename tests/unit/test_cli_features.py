"""waka features, features:enable, features:disable against a fake controller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import Cli, FakePlatform, serving


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


def test_features_lists_each_with_its_state(cli: Cli, platform: FakePlatform) -> None:
    platform.apps["demo"].private_network = True
    result = cli.run("features", "-a", "demo")
    assert result.status == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("=== App Features")
    assert lines[1].startswith("[ ] preboot         Zero-downtime deploys")
    assert lines[2].startswith("[+] private-network Dynos get a network namespace")
    listed = json.loads(cli.run("features", "-a", "demo", "--json").out)
    assert [(f["name"], f["enabled"]) for f in listed] == [
        ("preboot", False),
        ("private-network", True),
    ]


def test_enabling_private_network_says_the_running_dynos_are_replaced(
    cli: Cli, platform: FakePlatform
) -> None:
    result = cli.run("features:enable", "private-network", "-a", "demo")
    assert result.status == 0, result.err
    assert "Enabling private-network for" in result.out
    assert "Restarting dynos: new ones replace them, in the app's own network." in result.out
    (update,) = platform.calls_to("Apps.Update")
    assert update.set_private_network and update.private_network and not update.set_preboot
    # Already on: nothing to replace, and nothing said about it.
    again = cli.run("features:enable", "private-network", "-a", "demo")
    assert again.status == 0 and "Restarting" not in again.out
    # An app without dynos has nothing to restart.
    quiet = cli.run("features:enable", "private-network", "-a", "alpha")
    assert quiet.status == 0 and "Restarting" not in quiet.out


def test_disabling_moves_them_back_and_preboot_is_unchanged(
    cli: Cli, platform: FakePlatform
) -> None:
    platform.apps["demo"].private_network = True
    result = cli.run("features:disable", "private-network", "-a", "demo")
    assert "in the host's network" in result.out
    assert not platform.apps["demo"].private_network
    cli.run("features:disable", "preboot", "-a", "demo")
    (_, preboot) = platform.calls_to("Apps.Update")
    assert preboot.set_preboot and not preboot.set_private_network


def test_an_unknown_feature_is_refused_before_any_call(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("features:enable", "private-networking", "-a", "demo")
    assert result.status == 1
    assert 'unknown feature "private-networking"; features: preboot, private-network' in result.err
    assert not platform.calls_to("Apps.Update")
