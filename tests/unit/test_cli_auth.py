"""waka auth:token and auth:git-credential, which git runs on every push (so it must start fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_cli_fakes import WAKA_SCRIPT, Cli, base_environ


def _cli(tmp_path: Path, token: str | None = "tok-1") -> Cli:
    data = tmp_path / "data"
    data.mkdir()
    if token is not None:
        (data / "admin-token").write_text(f"{token}\n")
    return Cli(cwd=tmp_path, environ=base_environ(tmp_path) | {"WAKA_DATA_DIR": str(data)})


def test_get_answers_username_and_the_data_dir_token(tmp_path: Path) -> None:
    request = "protocol=http\nhost=127.0.0.1:7401\npath=demo.git\n\n"
    result = _cli(tmp_path).run("auth:git-credential", "get", stdin=request)
    assert result.status == 0, result.err
    assert result.out == "username=waka\npassword=tok-1\n"


def test_the_api_key_wins_over_the_token_file(tmp_path: Path) -> None:
    cli = _cli(tmp_path)
    cli.environ["WAKA_API_KEY"] = "from-env"
    assert cli.run("auth:git-credential", "get").out == "username=waka\npassword=from-env\n"
    assert cli.run("auth:token").out == "from-env\n"


def test_store_and_erase_do_nothing(tmp_path: Path) -> None:
    cli = _cli(tmp_path)
    request = "protocol=http\nhost=h\nusername=waka\npassword=tok-1\n\n"
    for operation in ("store", "erase"):
        result = cli.run("auth:git-credential", operation, stdin=request)
        assert (result.status, result.out, result.err) == (0, "", "")
    assert (tmp_path / "data" / "admin-token").read_text() == "tok-1\n"


def test_operations_from_a_newer_git_are_ignored_silently(tmp_path: Path) -> None:
    result = _cli(tmp_path).run("auth:git-credential", "capability", stdin="x=y\n\n")
    assert (result.status, result.out, result.err) == (0, "", "")


def test_get_without_a_token_fails_with_the_path_it_looked_at(tmp_path: Path) -> None:
    result = _cli(tmp_path, token=None).run("auth:git-credential", "get")
    assert result.status == 1
    assert result.out == ""
    looked = tmp_path / "data" / "admin-token"
    assert result.err == (
        f'error: no API token: set WAKA_API_KEY or run "waka up" on this machine '
        f"(looked in {looked})\n"
    )


def test_an_empty_token_file_counts_as_no_token(tmp_path: Path) -> None:
    result = _cli(tmp_path, token="").run("auth:token")
    assert result.status == 1
    assert "no API token" in result.err


def test_token_prints_the_token(tmp_path: Path) -> None:
    assert _cli(tmp_path).run("auth:token").out == "tok-1\n"


def test_the_default_data_dir_is_under_home(tmp_path: Path) -> None:
    data = tmp_path / ".local" / "share" / "waka"
    data.mkdir(parents=True)
    (data / "admin-token").write_text("home-token\n")
    cli = Cli(cwd=tmp_path, environ=base_environ(tmp_path))
    assert cli.run("auth:token").out == "home-token\n"


def test_credential_helper_loads_neither_grpc_nor_generated_modules(tmp_path: Path) -> None:
    """Checked in a fresh interpreter: what the helper imports is what git waits for."""
    probe = (
        "import io, json, sys\n"
        "from waka.cli.main import main\n"
        "sys.stdin = io.StringIO('protocol=http\\nhost=h\\n\\n')\n"
        "status = main(['auth:git-credential', 'get'])\n"
        "loaded = [m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'waka.v1'))]\n"
        "sys.stderr.write(json.dumps({'status': status, 'loaded': loaded}))\n"
    )
    env = base_environ(tmp_path) | {"WAKA_API_KEY": "tok-2"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr)
    assert report == {"status": 0, "loaded": []}
    assert done.stdout == "username=waka\npassword=tok-2\n"


def test_help_loads_no_grpc_either(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from waka.cli.main import main\n"
        "main(['--help'])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('grpc', 'waka.v1')))\n"
        "sys.stderr.write(str(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=base_environ(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr == "[]"
    assert "auth:git-credential" in done.stdout


def test_the_installed_script_answers_git(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(WAKA_SCRIPT), "auth:git-credential", "get"],
        input="protocol=http\nhost=h\n\n",
        env=base_environ(tmp_path) | {"WAKA_API_KEY": "tok-3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "username=waka\npassword=tok-3\n")
