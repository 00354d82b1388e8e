"""Add-ons end to end: real PostgreSQL and Redis servers run by waka, used from inside dynos.

One `waka up` serves the whole module (its data dir survives a restart in the last test).
Needs the Debian packages postgresql, postgresql-client, redis-server, redis-tools and
libnss-wrapper (initdb refuses a uid without a passwd entry; see controller/_addon_postgresql).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import WAKA, Daemon, start_up, stop_and_check_clean, wait_for

from waka.agent._netns import POOL, agent_tag, kernel_objects

pytestmark = pytest.mark.root

WEB = "web: python3 -m http.server $PORT\n"


@dataclass
class Platform:
    """The module's `waka up`; the restart test replaces `daemon` with the restarted one."""

    daemon: Daemon
    data_dir: Path
    apps_dir: Path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("addons")
    data_dir = root / "data"
    holder = Platform(start_up(data_dir), data_dir, root / "apps")
    holder.apps_dir.mkdir()
    try:
        yield holder
    finally:
        stop_and_check_clean(holder.daemon)


@pytest.fixture
def waka(platform: Platform) -> Daemon:
    return platform.daemon


def make_app(platform: Platform, name: str) -> str:
    """A deployed app (so config changes are releases and `waka run` works)."""
    waka = platform.daemon
    source = platform.apps_dir / name
    source.mkdir()
    (source / "Procfile").write_text(WEB)
    waka.waka("apps:create", name, "--no-remote")
    waka.waka("deploy", "-a", name, str(source))
    return name


def in_dyno(waka: Daemon, app: str, command: str, *, check: bool = True):
    return waka.waka("run", "--no-tty", "-a", app, command, check=check)


def psql(waka: Daemon, app: str, sql: str, var: str = "DATABASE_URL") -> str:
    return in_dyno(waka, app, f'psql "${var}" -X -A -t -v ON_ERROR_STOP=1 -c "{sql}"').stdout


def create(waka: Daemon, app: str, *args: str) -> dict:
    return json.loads(waka.waka("addons:create", *args, "-a", app, "--json").stdout)


def config(waka: Daemon, app: str) -> dict[str, str]:
    return waka.json("config", "-a", app)  # type: ignore[return-value]


def descriptions(waka: Daemon, app: str) -> list[str]:
    return [r["description"] for r in waka.json("releases", "-a", app)]  # type: ignore[union-attr]


def volume(platform: Platform, addon: dict) -> Path:
    return platform.data_dir / "agent" / "volumes" / addon["id"]


def wait_until_answering(waka: Daemon, app: str, command: str, timeout: float = 60) -> None:
    """A command in a dyno of the app succeeds (a server that just restarted may not yet)."""
    wait_for(
        lambda: in_dyno(waka, app, command, check=False).returncode == 0,
        timeout,
        f"`{command}` to succeed in {app}",
        interval=0.5,
    )


def secrets_of(waka: Daemon, app: str) -> list[str]:
    """The passwords in an app's add-on URLs."""
    found = []
    for value in config(waka, app).values():
        if "://" in value and "@" in value:
            found.append(value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])
    return found


def test_postgres_shared_by_two_apps_answers_queries_from_both(platform: Platform, waka: Daemon):
    make_app(platform, "pg-one")
    make_app(platform, "pg-two")
    change = create(waka, "pg-one", "postgresql")
    addon = change["addon"]
    assert addon["name"].startswith("postgresql-")
    assert change["releases"] == [
        {"app": "pg-one", "config_var": "DATABASE_URL", "version": 2, "action": "attach"}
    ]
    assert descriptions(waka, "pg-one")[0] == f"Attach DATABASE ({addon['name']})"
    assert config(waka, "pg-one")["DATABASE_URL"].startswith("postgres://")

    assert psql(waka, "pg-one", "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hi')")
    attached = waka.waka("addons:attach", addon["name"], "-a", "pg-two")
    assert "done, v2" in attached.stdout
    assert config(waka, "pg-two")["DATABASE_URL"] == config(waka, "pg-one")["DATABASE_URL"]
    assert psql(waka, "pg-two", "SELECT body FROM notes").strip() == "hi"
    # pg:info: what the database says of itself, asked from a dyno of the app.
    info = waka.waka("pg:info", "-a", "pg-two").stdout
    assert info.startswith("=== DATABASE_URL\n"), info
    fields = dict(line.split(":", 1) for line in info.splitlines()[1:])
    assert fields["Tables"].strip() == "1" and fields["Add-on"].strip() == addon["name"]
    assert fields["Status"].strip() == "available" and fields["PG Version"].strip()[0].isdigit()
    assert fields["Data Size"].strip().endswith("MB")
    used, limit = fields["Connections"].strip().split("/")
    assert 1 <= int(used) <= int(limit)

    listed = {a["name"]: a for a in waka.json("addons")}  # type: ignore[union-attr]
    assert listed[addon["name"]]["state"] == "available"
    assert listed[addon["name"]]["node"]
    assert sorted((a["app"], a["name"]) for a in listed[addon["name"]]["attachments"]) == [
        ("pg-one", "DATABASE"),
        ("pg-two", "DATABASE"),
    ]
    text = waka.waka("addons", "-a", "pg-two").stdout
    assert addon["name"] in text and "pg-one::DATABASE" in text and "pg-two::DATABASE" in text

    # Credentials live in config vars only: not in listings, logs or the controller's log.
    (password,) = secrets_of(waka, "pg-one")
    shown = waka.waka("addons", "--json").stdout + waka.waka("addons:info", addon["name"]).stdout
    logs = waka.waka("logs", "-a", "pg-one", "-n", "1500").stdout
    assert password not in shown
    assert password not in logs
    assert password not in waka.log()


def test_redis_round_trips_a_key_from_a_dyno(platform: Platform, waka: Daemon):
    make_app(platform, "cache")
    change = create(waka, "cache", "redis")
    assert change["releases"][0]["config_var"] == "REDIS_URL"
    assert config(waka, "cache")["REDIS_URL"].startswith("redis://")
    got = in_dyno(
        waka,
        "cache",
        'redis-cli --no-auth-warning -u "$REDIS_URL" SET greeting hello >/dev/null'
        ' && redis-cli --no-auth-warning -u "$REDIS_URL" GET greeting',
    )
    assert got.stdout.strip() == "hello"
    # redis:cli runs in a dyno of the app, with its stdin when there is no terminal.
    piped = subprocess.run(
        [WAKA, "redis:cli", "--no-tty", "-a", "cache"],
        input="GET greeting\n",
        env=waka.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == "hello"
    # The server's own output is in the app's logs, as `app[ADDON]` lines.
    name = change["addon"]["name"]
    wait_for(
        lambda: (
            "Ready to accept connections"
            in waka.waka("logs", "-a", "cache", "-n", "1500", "-d", name).stdout
        ),
        30,
        f"the output of {name} in the app's logs",
    )
    assert f"app[{name}]:" in waka.waka("logs", "-a", "cache", "-n", "1500").stdout


def test_an_app_on_a_private_network_reaches_its_addons_at_their_loopback_url(
    platform: Platform, waka: Daemon
):
    """Under `waka up` an add-on's URL names 127.0.0.1, which inside a private network is the
    namespace's own loopback: the agent maps the add-on ports (and only those) to the host."""
    tag = agent_tag((platform.data_dir / "agent").resolve())
    app = make_app(platform, "walled")
    try:
        waka.waka("features:enable", "private-network", "-a", app)
        create(waka, app, "redis")
        url = config(waka, app)["REDIS_URL"]
        assert url.rpartition("@")[2].startswith("127.0.0.1:"), url
        ping = (
            "ip -4 -o addr show dev eth0 | awk '{print $4}'"
            ' && redis-cli --no-auth-warning -u "$REDIS_URL" PING'
        )
        wait_until_answering(waka, app, ping)
        address, answer = in_dyno(waka, app, ping).stdout.split()
        assert ipaddress.ip_address(address.partition("/")[0]) in POOL  # in its namespace
        assert answer == "PONG"
        # The rest of the host's loopback stays out of reach.
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            probe = (
                f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 3)'"
            )
            assert in_dyno(waka, app, probe, check=False).returncode != 0
    finally:
        waka.waka("apps:destroy", app, "--confirm", app)
    wait_for(lambda: not kernel_objects(tag), 30, "the app's private network to be removed")


def test_an_app_cannot_use_another_apps_database(platform: Platform, waka: Daemon):
    make_app(platform, "own-a")
    make_app(platform, "own-b")
    a = create(waka, "own-a", "postgresql")["addon"]
    b = create(waka, "own-b", "postgresql")["addon"]
    # own-b's credentials against own-a's server: refused.
    attempt = in_dyno(
        waka,
        "own-b",
        f'psql "$(echo "$DATABASE_URL" | sed "s/:{b["port"]}\\//:{a["port"]}\\//")"'
        ' -X -c "SELECT 1"',
        check=False,
    )
    assert attempt.returncode != 0
    assert "password authentication failed" in attempt.stdout + attempt.stderr
    assert a["port"] != b["port"]


def test_detach_and_destroy_remove_config_vars_and_data(platform: Platform, waka: Daemon):
    make_app(platform, "gone-a")
    make_app(platform, "gone-b")
    addon = create(waka, "gone-a", "postgresql")["addon"]
    name = addon["name"]
    waka.waka("addons:attach", name, "-a", "gone-b", "--as", "SHARED")
    assert "SHARED_URL" in config(waka, "gone-b")
    assert volume(platform, addon).is_dir()

    detached = waka.waka("addons:detach", "SHARED", "-a", "gone-b")
    assert "done, v3" in detached.stdout
    assert "SHARED_URL" not in config(waka, "gone-b")
    assert descriptions(waka, "gone-b")[:2] == [
        f"Detach SHARED ({name})",
        f"Attach SHARED ({name})",
    ]
    waka.waka("addons:attach", name, "-a", "gone-b")

    refused = waka.waka("addons:destroy", name, check=False)
    assert refused.returncode == 1
    assert "--confirm gone-a" in refused.stderr
    assert "DATABASE_URL" in config(waka, "gone-a")

    destroyed = waka.waka("addons:destroy", name, "--confirm", "gone-a")
    assert "done" in destroyed.stdout
    for app in ("gone-a", "gone-b"):
        assert "DATABASE_URL" not in config(waka, app)
        assert descriptions(waka, app)[0] == f"Detach DATABASE ({name})"
    assert name not in [a["name"] for a in waka.json("addons")]  # type: ignore[union-attr]
    wait_for(lambda: not volume(platform, addon).exists(), 60, f"{name}'s data to be deleted")


def test_a_rollback_keeps_the_current_addon_config(platform: Platform, waka: Daemon):
    make_app(platform, "roll")
    waka.waka("config:set", "COLOR=red", "-a", "roll")  # v2
    create(waka, "roll", "redis")  # v3
    url = config(waka, "roll")["REDIS_URL"]
    result = waka.waka("rollback", "v2", "-a", "roll")
    assert "REDIS_URL" in result.stdout
    assert config(waka, "roll") == {"COLOR": "red", "REDIS_URL": url}
    assert descriptions(waka, "roll")[0] == (
        "Rollback to v2 (add-on config not rolled back: REDIS_URL)"
    )
    waka.waka("addons:detach", "REDIS", "-a", "roll")
    waka.waka("rollback", "v3", "-a", "roll")
    assert config(waka, "roll") == {"COLOR": "red"}


def test_backup_restore_and_download_round_trip_rows(
    platform: Platform, waka: Daemon, tmp_path: Path
):
    make_app(platform, "backed")
    create(waka, "backed", "postgresql")
    psql(
        waka, "backed", "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 50)"
    )
    captured = json.loads(waka.waka("pg:backups:capture", "-a", "backed", "--json").stdout)
    assert captured["status"] == "succeeded" and captured["size"] > 0
    backup_id = captured["id"]
    assert [b["id"] for b in waka.json("pg:backups", "-a", "backed")] == [backup_id]  # type: ignore[union-attr]

    psql(waka, "backed", "DELETE FROM kept WHERE n > 10; CREATE TABLE extra (x int)")
    refused = waka.waka("pg:backups:restore", backup_id, "-a", "backed", check=False)
    assert refused.returncode == 1 and "--confirm backed" in refused.stderr
    assert psql(waka, "backed", "SELECT count(*) FROM kept").strip() == "10"

    waka.waka("pg:backups:restore", backup_id, "-a", "backed", "--confirm", "backed")
    assert psql(waka, "backed", "SELECT count(*), sum(n) FROM kept").strip() == "50|1275"

    target = tmp_path / "backed.dump"
    waka.waka("pg:backups:download", backup_id, "-o", str(target))
    listing = subprocess.run(
        ["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True
    ).stdout
    assert "TABLE DATA public kept" in listing


def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(
    platform: Platform, waka: Daemon
):
    make_app(platform, "strict")
    create(waka, "strict", "redis", "--as", "CACHE")
    before = addon_state(platform)

    cases = [
        (["addons:create", "mysql", "-a", "strict"], "Unknown add-on service 'mysql'"),
        (["addons:create", "redis", "-a", "strict", "--as", "CACHE"], "already has an add-on"),
        (["addons:create", "redis", "-a", "strict", "--as", "bad name"], "Invalid attachment"),
        (["addons:create", "redis:huge", "-a", "strict"], "redis has no plan 'huge'"),
        (["addons:create", "redis", "-a", "missing-app"], "Couldn't find that app"),
        (["addons:create", "redis", "-a", "strict", "--node", "nowhere"], "No node named"),
        (["addons:attach", "CACHE", "-a", "missing-app"], "Couldn't find that add-on"),
        (["addons:detach", "nothing-here", "-a", "strict"], "Couldn't find that add-on"),
        (["addons:destroy", "CACHE"], "Couldn't find that add-on"),
        (["pg:psql", "-a", "strict", "--no-tty"], "has no postgresql add-on"),
        (["pg:info", "-a", "strict"], "has no postgresql add-on"),
    ]
    name = waka.json("addons", "-a", "strict")[0]["name"]  # type: ignore[index]
    cases += [
        (["addons:attach", name, "-a", "missing-app"], "Couldn't find that app"),
        (["addons:attach", name, "-a", "strict", "--as", "CACHE"], "already has an add-on"),
        (["addons:destroy", name], "--confirm strict"),
        (["addons:destroy", name, "--confirm", "other"], "--confirm strict"),
    ]
    for args, message in cases:
        result = waka.waka(*args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert addon_state(platform) == before


def addon_state(platform: Platform) -> str:
    """Add-ons, attachments, config vars and releases as stored, to prove a refusal changed
    nothing."""
    uri = f"file:{platform.data_dir / 'waka.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        tables = ("addons", "addon_attachments", "config_vars", "releases", "addon_servers")
        return "\n".join(
            repr(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()) for table in tables
        )


# ---------------------------------------------------------------- an external server


@dataclass
class ExternalServer:
    port: int
    password: str

    def admin(self, sql: str) -> str:
        return subprocess.run(
            ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={
                **os.environ,
                "PGHOST": "127.0.0.1",
                "PGPORT": str(self.port),
                "PGUSER": "postgres",
                "PGPASSWORD": self.password,
                "PGDATABASE": "postgres",
            },
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def external_postgres() -> Iterator[ExternalServer]:
    """A PostgreSQL server of the host's packages, as the `postgres` user (postgres refuses
    root), on a free loopback port, in a throwaway directory."""
    initdb = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]
    root = Path(tempfile.mkdtemp(prefix="waka-extpg-"))
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres", "postgres")
    password = "admin-secret"
    (root / "pw").write_text(password)
    shutil.chown(root / "pw", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(initdb), "-D", str(root / "data"), "-U", "postgres",
         f"--pwfile={root / 'pw'}", "--auth=scram-sha-256"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*as_postgres, str(initdb.parent / "postgres"), "-D", str(root / "data"),
         "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
         "-c", f"unix_socket_directories={root}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    external = ExternalServer(port, password)
    try:
        wait_for(lambda: external.admin("SELECT 1").strip() == "1", 60, "the external server")
        yield external
    finally:
        # runuser and postgres share the session started for them (pgid = runuser's pid).
        # SIGINT is PostgreSQL's fast shutdown: sessions are ended, not waited for.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGINT)
        pid_file = root / "data" / "postmaster.pid"
        try:
            wait_for(lambda: not pid_file.exists(), 30, "the external server to stop")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
            shutil.rmtree(root, ignore_errors=True)


def test_external_server_holds_a_private_database_per_addon(
    platform: Platform, waka: Daemon, external_postgres: ExternalServer
):
    server = external_postgres
    url = f"postgres://postgres:{server.password}@127.0.0.1:{server.port}/postgres"
    bad = waka.waka("addons:servers:add", "redis", url, check=False)
    assert bad.returncode == 1 and "cannot live on an external server" in bad.stderr
    waka.waka("addons:servers:add", "postgresql", url, "--name", "lan-db")
    listed = waka.waka("addons:servers").stdout
    assert "lan-db" in listed and f"127.0.0.1:{server.port}" in listed
    assert server.password not in listed
    try:
        make_app(platform, "ext")
        addon = create(waka, "ext", "postgresql")["addon"]
        assert addon["mode"] == "external" and addon["server"] == "lan-db"
        assert addon["plan"] == "external"
        psql(waka, "ext", "CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        assert psql(waka, "ext", "SELECT x FROM t").strip() == "7"
        database = config(waka, "ext")["DATABASE_URL"].rsplit("/", 1)[1]
        acl = server.admin(f"SELECT datacl FROM pg_database WHERE datname = '{database}'")
        assert "{=" not in acl and ",=" not in acl  # PUBLIC (an empty grantee) has nothing

        in_use = waka.waka("addons:servers:remove", "lan-db", check=False)
        assert in_use.returncode == 1 and "destroy them first" in in_use.stderr
        waka.waka("addons:destroy", addon["name"], "--confirm", "ext")
        assert (
            server.admin(f"SELECT count(*) FROM pg_database WHERE datname = '{database}'")[0] == "0"
        )
        assert "DATABASE_URL" not in config(waka, "ext")
    finally:
        for left in waka.json("addons"):  # type: ignore[union-attr]
            if left["mode"] == "external":
                waka.waka("addons:destroy", left["name"], "--confirm", left["app"], check=False)
        waka.waka("addons:servers:remove", "lan-db")


# ---------------------------------------------------------------- last: a restart


def test_addon_data_survives_a_restart_of_waka(platform: Platform):
    waka = platform.daemon
    make_app(platform, "durable")
    pg = create(waka, "durable", "postgresql")["addon"]
    redis = create(waka, "durable", "redis")["addon"]
    psql(waka, "durable", "CREATE TABLE kept (word text); INSERT INTO kept VALUES ('still here')")
    in_dyno(waka, "durable", 'redis-cli --no-auth-warning -u "$REDIS_URL" SET word kept')

    code = waka.stop()
    assert code == 0, waka.log()
    platform.daemon = waka = start_up(platform.data_dir)

    states = {a["name"]: a for a in waka.json("addons", "-a", "durable")}  # type: ignore[union-attr]
    assert states[pg["name"]]["port"] == pg["port"]
    wait_until_answering(waka, "durable", 'psql "$DATABASE_URL" -X -c "SELECT 1"')
    wait_until_answering(waka, "durable", 'redis-cli --no-auth-warning -u "$REDIS_URL" PING')
    assert states[redis["name"]]["port"] == redis["port"]
    assert psql(waka, "durable", "SELECT word FROM kept").strip() == "still here"
    got = in_dyno(waka, "durable", 'redis-cli --no-auth-warning -u "$REDIS_URL" GET word')
    assert got.stdout.strip() == "kept"
