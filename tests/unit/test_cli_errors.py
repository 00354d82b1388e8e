"""Failures become one clear line on stderr and exit 1 (usage errors: 2), never a traceback."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from test_cli_fakes import Cli, FakePlatform, base_environ, serving

from waka.cli._credentials import ApiTarget
from waka.cli._rpc_errors import describe_status


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_no_controller_names_the_address(cli: Cli, closed_port: int) -> None:
    cli.environ["WAKA_API"] = f"127.0.0.1:{closed_port}"
    result = cli.run("apps")
    assert result.status == 1
    address = f"127.0.0.1:{closed_port}"
    assert result.err == (
        f'error: cannot reach the waka controller at {address} (is "waka up" running?)\n'
    )


def test_no_controller_while_streaming_is_mapped_too(cli: Cli, closed_port: int) -> None:
    cli.environ["WAKA_API"] = f"127.0.0.1:{closed_port}"
    result = cli.run("logs", "-a", "demo", "-t")
    assert result.status == 1
    assert "error: cannot reach the waka controller" in result.err


def test_a_wrong_token_points_at_both_places_a_token_comes_from(cli: Cli) -> None:
    cli.environ["WAKA_API_KEY"] = "wrong"
    result = cli.run("apps")
    token_file = Path(cli.environ["HOME"]) / ".local" / "share" / "waka" / "admin-token"
    assert (result.status, result.err) == (
        1,
        f"error: authentication failed: check WAKA_API_KEY or {token_file}\n",
    )


def test_not_found_prints_the_controllers_words(cli: Cli) -> None:
    result = cli.run("apps:info", "-a", "nope")
    assert (result.status, result.out, result.err) == (
        1,
        "",
        "error: Couldn't find that app: nope\n",
    )


def test_invalid_argument_prints_the_controllers_words(cli: Cli, platform: FakePlatform) -> None:
    platform.failures["Dynos.Restart"] = (
        grpc.StatusCode.INVALID_ARGUMENT,
        'no process type or dyno "db" on demo',
    )
    result = cli.run("restart", "db", "-a", "demo")
    assert result.status == 1
    assert result.err == 'error: no process type or dyno "db" on demo\n'


def test_a_failing_stream_is_mapped(cli: Cli, platform: FakePlatform) -> None:
    platform.failures["Logs.Tail"] = (grpc.StatusCode.NOT_FOUND, "Couldn't find that app: x")
    result = cli.run("logs", "-a", "x")
    assert (result.status, result.err) == (1, "error: Couldn't find that app: x\n")


def test_a_refused_upload_is_mapped(cli: Cli, platform: FakePlatform) -> None:
    platform.failures["Builds.Create"] = (grpc.StatusCode.NOT_FOUND, "Couldn't find that app: x")
    (cli.cwd / "app.py").write_text("")
    result = cli.run("deploy", "-a", "x")
    assert (result.status, result.err) == (1, "error: Couldn't find that app: x\n")


def test_missing_token_names_the_file_it_looked_for(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, environ=base_environ(tmp_path) | {"WAKA_DATA_DIR": str(tmp_path)})
    result = cli.run("apps")
    assert (result.status, result.err) == (
        1,
        'error: no API token: set WAKA_API_KEY or run "waka up" on this machine '
        f"(looked in {tmp_path / 'admin-token'})\n",
    )


def test_a_broken_controller_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("t")
    (tmp_path / "controller.json").write_text("{not json")
    cli = Cli(cwd=tmp_path, environ=base_environ(tmp_path) | {"WAKA_DATA_DIR": str(tmp_path)})
    result = cli.run("apps")
    assert result.status == 1
    assert f"error: cannot read the controller's address from {tmp_path}/controller.json" in (
        result.err
    )


def test_the_address_comes_from_controller_json(
    platform: FakePlatform, tmp_path: Path, closed_port: int
) -> None:
    (tmp_path / "admin-token").write_text("t")
    (tmp_path / "controller.json").write_text(json.dumps({"api": f"127.0.0.1:{closed_port}"}))
    cli = Cli(cwd=tmp_path, environ=base_environ(tmp_path) | {"WAKA_DATA_DIR": str(tmp_path)})
    assert f"at 127.0.0.1:{closed_port} " in cli.run("apps").err


def test_usage_errors_exit_2_with_the_usage_line(cli: Cli, platform: FakePlatform) -> None:
    result = cli.run("ps:scale", "--bogus")
    assert result.status == 2
    assert result.err.startswith("usage: waka ps:scale ")
    assert result.err.endswith("error: unrecognized arguments: --bogus\n")
    missing = cli.run("config:get")
    assert missing.status == 2
    assert "the following arguments are required: KEY" in missing.err
    assert platform.calls == []


def test_an_unknown_command_points_at_help(cli: Cli) -> None:
    result = cli.run("deplo")
    assert result.status == 2
    assert result.err.endswith('error: "deplo" is not a waka command; "waka help" lists them\n')


def test_expected_failures_never_print_a_traceback(cli: Cli, closed_port: int) -> None:
    cli.environ["WAKA_API"] = f"127.0.0.1:{closed_port}"
    for argv in (["apps"], ["ps", "-a", "x"], ["ps:scale", "web=x=1", "-a", "x"], ["nope"]):
        assert "Traceback" not in cli.run(*argv).err


TARGET = ApiTarget(address="10.0.0.1:7400", token="t", data_dir=Path("/data"))


@pytest.mark.parametrize(
    ("code", "details", "message"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses",
            'cannot reach the waka controller at 10.0.0.1:7400 (is "waka up" running?)',
        ),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid token",
            "authentication failed: check WAKA_API_KEY or /data/admin-token",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            "the waka controller at 10.0.0.1:7400 did not answer within 30 seconds",
        ),
        (
            grpc.StatusCode.UNIMPLEMENTED,
            "Method not found!",
            "the waka controller at 10.0.0.1:7400 does not support this command "
            "(is it an older version?): Method not found!",
        ),
        (grpc.StatusCode.NOT_FOUND, "Couldn't find that app: x", "Couldn't find that app: x"),
        (grpc.StatusCode.FAILED_PRECONDITION, "app has no slug", "app has no slug"),
        (
            grpc.StatusCode.INTERNAL,
            "",
            "the waka controller at 10.0.0.1:7400 failed with status INTERNAL",
        ),
    ],
)
def test_status_codes_read_as_sentences(code: grpc.StatusCode, details: str, message: str) -> None:
    assert describe_status(code, details, TARGET) == message


class _Interrupted(io.StringIO):
    def write(self, text: str) -> int:
        raise KeyboardInterrupt


def test_ctrl_c_outside_a_tail_exits_130_without_a_traceback(cli: Cli) -> None:
    result = cli.run("ps", "-a", "demo", stdout=_Interrupted())
    assert (result.status, result.err) == (130, "")
