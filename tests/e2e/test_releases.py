"""Config vars, releases, rollback and release phase, checked from inside the dynos."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import WAKA, Daemon, running_waka, wait_for

pytestmark = pytest.mark.root

AWKWARD = {
    "SPACES": "  leading and trailing  ",
    "QUOTES": 'it\'s "quoted"',
    "EQUALS": "a=b=c",
    "NEWLINES": "line one\nline two\n",
    "UNICODE": "héllo wörld ⬢ 日本",
    "EMPTY": "",
    "DOLLAR": "$HOME and `backticks` and \\backslash",
}


@pytest.fixture(scope="module")
def waka(tmp_path_factory: pytest.TempPathFactory):
    with running_waka(
        tmp_path_factory.mktemp("releases") / "data", "--release-timeout", "5"
    ) as daemon:
        yield daemon


def make_app(waka: Daemon, tmp_path: Path, name: str, procfile: str, files=None) -> Path:
    app = tmp_path / name
    app.mkdir()
    (app / "Procfile").write_text(procfile)
    for filename, text in (files or {}).items():
        (app / filename).write_text(text)
    waka.waka("apps:create", name, "--no-remote")
    return app


def run_in_dyno(waka: Daemon, app: str, command: str) -> str:
    result = waka.waka("run", "--no-tty", "-a", app, command)
    return result.stdout


def test_config_round_trips_awkward_values_and_reaches_the_dyno(waka: Daemon, tmp_path: Path):
    probe = (
        f"import os, json\nprint(json.dumps({{k: os.environ[k] for k in {sorted(AWKWARD)!r}}}))\n"
    )
    make_app(waka, tmp_path, "cfg", "web: python3 -m http.server $PORT\n", {"probe.py": probe})
    waka.waka("deploy", "-a", "cfg", str(tmp_path / "cfg"))
    args = [f"{k}={v}" for k, v in AWKWARD.items()]
    result = waka.waka("config:set", *args, "-a", "cfg")
    assert "Setting SPACES, QUOTES, EQUALS, NEWLINES, UNICODE, EMPTY, DOLLAR" in result.stdout
    assert "done, v2" in result.stdout
    assert waka.json("config", "-a", "cfg") == AWKWARD
    for key, value in AWKWARD.items():
        assert waka.waka("config:get", key, "-a", "cfg").stdout == value + "\n"
    # Inside the dyno, byte for byte (python prints repr so nothing is lost).
    inside = run_in_dyno(waka, "cfg", "python3 probe.py")
    assert json.loads(inside) == AWKWARD
    waka.waka("config:unset", "UNICODE", "EMPTY", "-a", "cfg")
    after = run_in_dyno(waka, "cfg", "env | grep -c '^UNICODE=' || true")
    assert after.strip() == "0"
    releases = waka.json("releases", "-a", "cfg")
    assert [r["description"] for r in releases[:2]] == [
        "Config remove EMPTY, UNICODE",
        "Config add DOLLAR, EMPTY, EQUALS, NEWLINES, QUOTES, SPACES, UNICODE",
    ]


def test_dotenv_push_then_pull_round_trips(waka: Daemon, tmp_path: Path):
    make_app(waka, tmp_path, "dotenv", "web: python3 -m http.server $PORT\n")
    env = tmp_path / "dotenv" / ".env"
    env.write_text(
        "# a comment\n"
        "export PLAIN=value # trailing comment\n"
        "SINGLE='single $quoted # not a comment'\n"
        'DOUBLE="with \\"escapes\\" and\\nnewline"\n'
        'MULTI="first\nsecond"\n'
        "\n"
        "CONTINUED=one\\\n"
        "two\n"
    )
    waka.waka("config:push", "-a", "dotenv", cwd=tmp_path / "dotenv")
    config = waka.json("config", "-a", "dotenv")
    assert config == {
        "PLAIN": "value",
        "SINGLE": "single $quoted # not a comment",
        "DOUBLE": 'with "escapes" and\nnewline',
        "MULTI": "first\nsecond",
        "CONTINUED": "one\ntwo",
    }
    pulled = tmp_path / "pulled.env"
    waka.waka("config:pull", str(pulled), "-a", "dotenv")
    other = make_app(waka, tmp_path, "dotenv2", "web: true\n")
    waka.waka("config:push", str(pulled), "-a", "dotenv2", cwd=other)
    assert waka.json("config", "-a", "dotenv2") == config


def test_bad_dotenv_line_is_an_error_with_its_number_and_sets_nothing(waka: Daemon, tmp_path: Path):
    make_app(waka, tmp_path, "baddotenv", "web: true\n")
    (tmp_path / "bad.env").write_text("GOOD=1\nthis is not an assignment\n")
    result = waka.waka("config:push", str(tmp_path / "bad.env"), "-a", "baddotenv", check=False)
    assert result.returncode == 1
    assert "bad.env line 2: expected KEY=value" in result.stderr
    assert waka.json("config", "-a", "baddotenv") == {}


def test_config_over_32_kb_is_refused(waka: Daemon, tmp_path: Path):
    make_app(waka, tmp_path, "bigcfg", "web: true\n")
    result = waka.waka("config:set", "BIG=" + "x" * 33_000, "-a", "bigcfg", check=False)
    assert result.returncode == 1
    assert "at most 32768 bytes" in result.stderr
    assert waka.json("config", "-a", "bigcfg") == {}


def test_rollback_restores_slug_and_config_as_seen_inside_the_dyno(waka: Daemon, tmp_path: Path):
    app = make_app(
        waka, tmp_path, "roll", "web: python3 -m http.server $PORT\n", {"version.txt": "one\n"}
    )
    waka.waka("config:set", "COLOR=red", "-a", "roll")
    waka.waka("deploy", "-a", "roll", str(app))  # v1: slug one, red
    (app / "version.txt").write_text("two\n")
    waka.waka("deploy", "-a", "roll", str(app))  # v2: slug two, red
    waka.waka("config:set", "COLOR=blue", "-a", "roll")  # v3: slug two, blue
    assert run_in_dyno(waka, "roll", "cat version.txt; echo $COLOR") == "two\nblue\n"

    result = waka.waka("rollback", "v1", "-a", "roll")
    assert "done, v4" in result.stdout and "Rolled back to v1" in result.stdout
    assert run_in_dyno(waka, "roll", "cat version.txt; echo $COLOR") == "one\nred\n"
    assert waka.json("config", "-a", "roll") == {"COLOR": "red"}
    releases = waka.json("releases", "-a", "roll")
    assert releases[0]["description"] == "Rollback to v1"
    waka.wait_for_dyno("roll", release=4)

    # Without a version: the release before the current one.
    waka.waka("rollback", "-a", "roll")
    assert run_in_dyno(waka, "roll", "cat version.txt; echo $COLOR") == "two\nblue\n"
    missing = waka.waka("rollback", "v99", "-a", "roll", check=False)
    assert missing.returncode == 1 and "Release v99 not found" in missing.stderr


def test_release_phase_success_runs_before_dynos_move(waka: Daemon, tmp_path: Path):
    app = make_app(
        waka,
        tmp_path,
        "phase",
        "web: python3 -m http.server $PORT\nrelease: echo migrating to $WAKA_RELEASE_VERSION\n",
    )
    deployed = waka.waka("deploy", "-a", "phase", str(app))
    assert "-----> Running release command..." in deployed.stdout
    assert "migrating to v1" in deployed.stdout
    output = waka.waka("releases:output", "v1", "-a", "phase").stdout
    assert "migrating to v1" in output
    assert waka.json("releases", "-a", "phase")[0]["status"] == "succeeded"
    waka.wait_for_dyno("phase", release=1)


@pytest.mark.parametrize(
    ("command", "message"),
    [("echo failing; exit 3", "exited with status 3"), ("sleep 60", "Error R13 (Run timeout)")],
)
def test_failed_release_phase_leaves_the_old_release_serving(
    waka: Daemon, tmp_path: Path, command: str, message: str
):
    name = "fail" + str(len(command))
    app = make_app(waka, tmp_path, name, "web: python3 -m http.server $PORT\n")
    waka.waka("deploy", "-a", name, str(app))
    old = waka.wait_for_dyno(name, release=1)
    (app / "Procfile").write_text(f"web: python3 -m http.server $PORT\nrelease: {command}\n")
    result = waka.waka("deploy", "-a", name, str(app), check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    releases = waka.json("releases", "-a", name)
    assert [(r["version"], r["status"]) for r in releases] == [(2, "failed"), (1, "succeeded")]
    assert [(d["release"], d["address"]) for d in waka.dynos(name)] == [(1, old["address"])]


def test_concurrent_config_changes_get_consecutive_versions_and_both_apply(
    waka: Daemon, tmp_path: Path
):
    app = make_app(waka, tmp_path, "race", "web: python3 -m http.server $PORT\n")
    waka.waka("deploy", "-a", "race", str(app))
    errors: list[BaseException] = []

    def set_var(i: int) -> None:
        try:
            waka.waka("config:set", f"VAR{i}={i}", "-a", "race")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=set_var, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    versions = sorted(r["version"] for r in waka.json("releases", "-a", "race"))
    assert versions == list(range(1, 8))
    assert waka.json("config", "-a", "race") == {f"VAR{i}": str(i) for i in range(6)}


def test_one_off_dynos_exit_status_stdin_and_detached_output(waka: Daemon, tmp_path: Path):
    app = make_app(waka, tmp_path, "oneoff", "web: python3 -m http.server $PORT\n")
    waka.waka("deploy", "-a", "oneoff", str(app))
    status = waka.waka("run", "--no-tty", "-a", "oneoff", "exit 42", check=False)
    assert status.returncode == 42
    piped = subprocess.run(
        [WAKA, "run", "--no-tty", "-a", "oneoff", "tr a-z A-Z"],
        input="hello through stdin\n",
        env=waka.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "HELLO THROUGH STDIN\n"
    assert "up, run." in piped.stderr
    detached = waka.waka("run:detached", "-a", "oneoff", "echo detached-output from $DYNO")
    name = detached.stdout.split("up, ")[1].split()[0]

    def logged() -> bool:
        logs = waka.waka("logs", "-a", "oneoff", "-d", name, "-n", "50").stdout
        return f"app[{name}]: detached-output from {name}" in logs and "Process exited" in logs

    wait_for(logged, 30, "the detached dyno's output in the logs")

    def gone() -> bool:
        return all(d["type"] != "run" for d in waka.dynos("oneoff"))

    wait_for(gone, 30, "finished one-off dynos to leave `waka ps`")


def test_retry_runs_the_latest_release_phase_again_as_a_new_release(waka: Daemon, tmp_path: Path):
    app = make_app(waka, tmp_path, "again", "web: python3 -m http.server $PORT\n")
    waka.waka("deploy", "-a", "again", str(app))
    refused = waka.waka("releases:retry", "-a", "again", check=False)
    assert refused.returncode == 1
    assert "v1 has no release phase to retry" in refused.stderr, refused.stderr
    # The release phase fails on v2 only, as a migration does while its database is down.
    (app / "Procfile").write_text(
        "web: python3 -m http.server $PORT\n"
        'release: echo phase of $WAKA_RELEASE_VERSION; test "$WAKA_RELEASE_VERSION" != v2\n'
    )
    assert waka.waka("deploy", "-a", "again", str(app), check=False).returncode != 0
    result = waka.waka("releases:retry", "-a", "again")
    assert "Retrying the latest release of ⬢ again... done, v3" in result.stdout, result.stdout
    assert "Retry of v2" in result.stdout
    waited = waka.waka("ps:wait", "-a", "again", "-w", "0.2", timeout=60)
    assert waited.stdout == "Waiting for every dyno to be running v3... 1 / 1, done\n"
    assert [(d["release"], d["state"]) for d in waka.dynos("again")] == [(3, "up")]
    releases = waka.json("releases", "-a", "again")
    assert [(r["version"], r["status"]) for r in releases] == [
        (3, "succeeded"),
        (2, "failed"),
        (1, "succeeded"),
    ]
    assert "phase of v3" in waka.waka("releases:output", "v3", "-a", "again").stdout
