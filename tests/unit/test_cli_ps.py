"""waka ps (Heroku's layout), ps:scale (argument forms and output) and ps:restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from test_cli_fakes import Cli, FakePlatform, serving

from waka.cli._errors import CliError
from waka.cli._scale import Change, parse_change, parse_changes
from waka.v1 import common_pb2


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


def test_ps_groups_by_type_with_heroku_lines(cli: Cli) -> None:
    result = cli.run("ps", "-a", "demo")
    assert result.status == 0, result.err
    assert result.out == (
        "=== web (standard-1x): `python app.py` (2)\n"
        "web.1: up 2026/11/26 03:01:28 +0000 (~ 5m ago)  v3  node-1  127.0.0.1:20001\n"
        "web.2: crashed 2026/11/26 03:01:28 +0000 (~ 5m ago)  v3  node-2\n"
        "  exited with status 1\n"
        "\n"
        "=== worker (standard-1x): `python worker.py` (1)\n"
        "worker.1: up 2026/11/26 03:01:28 +0000 (~ 5m ago)  v3  node-1\n"
    )


def test_ps_orders_dynos_by_number_not_by_text(cli: Cli, platform: FakePlatform) -> None:
    web1 = platform.dynos["demo"][2]
    platform.dynos["demo"] = []
    for number in (10, 2, 1):
        dyno = type(web1)()
        dyno.CopyFrom(web1)
        dyno.name = f"web.{number}"
        platform.dynos["demo"].append(dyno)
    names = [line.split(":")[0] for line in cli.run("ps", "-a", "demo").out.splitlines()[1:]]
    assert names == ["web.1", "web.2", "web.10"]


def test_ps_names_every_state_in_herokus_words(cli: Cli, platform: FakePlatform) -> None:
    states = {1: "starting", 2: "up", 3: "crashed", 4: "down", 5: "pending", 0: "unknown"}
    dynos = platform.dynos["demo"]
    for state, word in states.items():
        dynos[2].state = state  # web.1
        assert f"web.1: {word} 2026/11/26" in cli.run("ps", "-a", "demo").out


def test_ps_without_dynos_says_so(cli: Cli) -> None:
    assert cli.run("ps", "-a", "alpha").out == "No dynos on ⬢ alpha\n"


def test_ps_json_lists_dynos_with_stable_fields(cli: Cli) -> None:
    dynos = json.loads(cli.run("ps", "-a", "demo", "--json").out)
    assert [dyno["name"] for dyno in dynos] == ["web.1", "web.2", "worker.1"]
    assert dynos[0] == {
        "id": "d1",
        "name": "web.1",
        "type": "web",
        "state": "up",
        "release": 3,
        "node": "node-1",
        "address": "127.0.0.1:20001",
        "command": "python app.py",
        "size": "standard-1x",
        "state_changed_at": "2026-11-26T03:01:28.000000+00:00",
        "message": "",
        "restarts": 0,
    }
    assert dynos[1]["message"] == "exited with status 1"


@pytest.mark.parametrize(
    ("text", "change"),
    [
        ("web=2", Change("web", 2)),
        ("web=0", Change("web", 0)),
        ("web+1", Change("web", 1, relative=True)),
        ("worker-1", Change("worker", -1, relative=True)),
        ("web=2:standard-2x", Change("web", 2, size="standard-2x")),
        ("web=2:Standard-2X", Change("web", 2, size="standard-2x")),
        ("web+3:performance-m", Change("web", 3, relative=True, size="performance-m")),
        ("web=standard-2x", Change("web", None, size="standard-2x")),
        ("web=2:2X", Change("web", 2, size="2x")),
        ("web=2X", Change("web", None, size="2x")),
        ("my-worker-1", Change("my-worker", -1, relative=True)),
        ("my-worker=10", Change("my-worker", 10)),
        ("queue_2=1", Change("queue_2", 1)),
    ],
)
def test_scale_argument_forms(text: str, change: Change) -> None:
    assert parse_change(text) == change


@pytest.mark.parametrize(
    "text",
    ["web", "web=", "=2", "web=2:", "web=-1", "web==2", "web=2:2", "web 2", "web=1.5", "web=2=3"],
)
def test_bad_scale_arguments_are_named_in_the_error(text: str) -> None:
    with pytest.raises(CliError) as raised:
        parse_change(text)
    assert raised.value.message == (
        f'invalid scale argument "{text}": '
        "expected TYPE=N, TYPE+N, TYPE-N, TYPE=N:SIZE or TYPE=SIZE"
    )


def test_a_type_scaled_twice_is_an_error() -> None:
    with pytest.raises(CliError, match='process type "web" is scaled more than once'):
        parse_changes(["web=1", "web+1"])


def test_scale_sends_changes_and_lists_the_formation(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("ps:scale", "-a", "demo", "web=3:standard-2x", "worker-1")
    assert result.status == 0, result.err
    assert result.out == (
        "Scaling dynos... done, now running web at 3:standard-2x, worker at 0:standard-1x\n"
    )
    web, worker = platform.calls_to("Formation.Scale")[0].changes
    assert (web.type, web.quantity, web.relative, web.has_quantity, web.size) == (
        "web",
        3,
        False,
        True,
        "standard-2x",
    )
    assert (worker.type, worker.quantity, worker.relative, worker.has_quantity) == (
        "worker",
        -1,
        True,
        True,
    )


def test_a_size_only_change_keeps_the_quantity(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("scale", "-a", "demo", "web=performance-m")
    assert result.out == (
        "Scaling dynos... done, now running web at 2:performance-m, worker at 1:standard-1x\n"
    )
    (change,) = platform.calls_to("Formation.Scale")[0].changes
    assert (change.has_quantity, change.size) == (False, "performance-m")


def test_scale_with_bad_syntax_calls_nothing(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("ps:scale", "-a", "demo", "web=2", "worker=lots:x")
    assert result.status == 1
    assert 'invalid scale argument "worker=lots:x"' in result.err
    assert platform.calls == []


def test_scale_refused_by_the_controller_prints_its_reason(cli: Cli) -> None:
    result = cli.run("ps:scale", "-a", "demo", "clock=1")
    assert result.status == 1
    assert result.out == "Scaling dynos... !\n"
    assert result.err == "error: No such process type clock\n"


def test_scale_without_arguments_shows_the_formation(cli: Cli) -> None:
    assert cli.run("ps:scale", "-a", "demo").out == "web=2:standard-1x worker=1:standard-1x\n"


@pytest.mark.parametrize(
    ("argv", "target", "line"),
    [
        (["restart"], "", "Restarting dynos on ⬢ demo... done\n"),
        (["ps:restart"], "", "Restarting dynos on ⬢ demo... done\n"),
        (["ps:restart", "web"], "web", "Restarting web dynos on ⬢ demo... done\n"),
        (["restart", "web.1"], "web.1", "Restarting web.1 dyno on ⬢ demo... done\n"),
    ],
)
def test_restart_targets_the_app_a_type_or_a_dyno(
    cli: Cli, platform: FakePlatform, argv: list[str], target: str, line: str
) -> None:
    result = cli.run(*argv, "-a", "demo")
    assert (result.status, result.out) == (0, line)
    assert platform.calls_to("Dynos.Restart")[0].target == target


def test_ps_wait_returns_once_every_dyno_is_up_on_the_current_release(
    cli: Cli, platform: FakePlatform
) -> None:
    # web.2 has crashed: the wait goes on until it is up again.
    def recover() -> None:
        wait_for(lambda: len(platform.calls_to("Dynos.List")) >= 2, 10, "a second look")
        crashed = next(d for d in platform.dynos["demo"] if d.name == "web.2")
        crashed.state = common_pb2.DYNO_STATE_UP

    helper = threading.Thread(target=recover)
    helper.start()
    result = cli.run("ps:wait", "-a", "demo", "-w", "0.01")
    helper.join()
    assert result.status == 0, result.err
    assert result.out == "Waiting for every dyno to be running v3... 3 / 3, done\n"
    assert len(platform.calls_to("Dynos.List")) >= 2


def test_ps_wait_counts_only_the_type_asked_for_and_refuses_nonsense(cli: Cli) -> None:
    # web.2 is crashed, but only workers are waited for.
    result = cli.run("ps:wait", "-a", "demo", "--type", "worker")
    assert result.out.endswith("1 / 1, done\n"), result.out
    bad = cli.run("ps:wait", "-a", "demo", "-w", "0")
    assert bad.status == 1 and "--wait-interval must be a positive number" in bad.err
    unreleased = cli.run("ps:wait", "-a", "alpha")
    assert unreleased.status == 1 and "alpha has no release yet" in unreleased.err
