"""The built-in providers and the registry, with a recording runner instead of real programs
(the real servers are exercised in tests/e2e/test_addons.py)."""

import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from waka.controller._addon_postgresql import (
    PostgresProvider,
    parse_server_url,
    startup_probe,
)
from waka.controller._addon_provider import (
    AddonFailed,
    AddonRecord,
    CommandResult,
    Provider,
    Providers,
)
from waka.controller._addon_redis import RedisProvider, ping
from waka.controller._errors import InvalidInput, NotFound
from waka.controller._sizes import DEFAULT_SIZES

PG_CREDENTIALS = {"user": "uabc", "password": "s3cret'x", "database": "dabc"}


class RecordingRunner:
    def __init__(self, *results: CommandResult) -> None:
        self.calls: list[tuple[list[str], dict[str, str], str]] = []
        self._results = list(results)

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], stdin: str, timeout: float
    ) -> CommandResult:
        self.calls.append((list(argv), dict(env), stdin))
        return self._results.pop(0) if self._results else CommandResult(0, "", "")


def pg_record(**changes) -> AddonRecord:
    values = {
        "id": "a1",
        "name": "postgresql-shiny-12345",
        "service": "postgresql",
        "plan": "basic",
        "mode": "managed",
        "host": "10.0.0.5",
        "port": 30001,
        "credentials": PG_CREDENTIALS,
    }
    values.update(changes)
    return AddonRecord(**values)


def test_registry_finds_services_case_insensitively_and_names_the_known_ones():
    providers = Providers([PostgresProvider(), RedisProvider()])
    assert providers.get(" PostgreSQL ").service == "postgresql"
    with pytest.raises(NotFound, match="Unknown add-on service 'mysql'; services are: postgresql"):
        providers.get("mysql")
    with pytest.raises(ValueError, match="already registered"):
        providers.register(RedisProvider())


def test_a_new_service_is_one_provider_registered_like_the_built_in_ones():
    class Echo(Provider):
        service = "echo"
        attachment = "ECHO"
        plans = RedisProvider.plans
        default_plan = "basic"

        def new_credentials(self, token):
            return {"password": token(4)}

        def credentials(self, record):
            return f"echo://{record.host}:{record.port}"

        def service_process(self, record, size):
            raise NotImplementedError

        def status(self, record):
            return True

    providers = Providers([Echo()])
    assert providers.get("echo").plan("").name == "basic"
    with pytest.raises(InvalidInput, match="cannot live on an external server"):
        providers.get("echo").check_server("echo://x")
    with pytest.raises(InvalidInput, match="have no backups"):
        providers.get("echo").backup(pg_record(), Path("/nonexistent"))


def test_unknown_plans_are_refused_with_the_list():
    with pytest.raises(InvalidInput, match="postgresql has no plan 'huge'; plans are: mini"):
        PostgresProvider().plan("huge")
    assert PostgresProvider().plan("").name == "basic"


def test_postgres_url_quotes_credentials():
    url = PostgresProvider().credentials(pg_record())
    assert url == "postgres://uabc:s3cret%27x@10.0.0.5:30001/dabc"
    assert (
        PostgresProvider()
        .credentials(pg_record(host="fd00::1"))
        .startswith("postgres://uabc:s3cret%27x@[fd00::1]:30001/")
    )


def test_managed_postgres_gets_its_password_in_the_environment_not_the_command():
    process = PostgresProvider().service_process(pg_record(), DEFAULT_SIZES["mini"])
    assert "s3cret" not in process.command
    assert process.env["WAKA_ADDON_PASSWORD"] == "s3cret'x"
    assert process.env["WAKA_ADDON_SHARED_BUFFERS"] == "64MB"
    # A mini sandbox allows 128 processes: connections stay well below.
    assert process.env["WAKA_ADDON_MAX_CONNECTIONS"] == "42"
    assert "initdb" in process.command and 'port="$PORT"' in process.command


def test_new_credentials_are_fresh_random_identifiers():
    tokens = iter(["0a", "1b", "2c"])
    credentials = PostgresProvider().new_credentials(lambda _n: next(tokens))
    assert credentials == {"user": "u0a", "password": "1b", "database": "d2c"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://admin@db.lan/", ("db.lan", 5432, "admin", "", "postgres")),
        ("postgresql://a%40b:p%3Aw@10.1.2.3:6543/main", ("10.1.2.3", 6543, "a@b", "p:w", "main")),
    ],
)
def test_server_urls_are_parsed(url, expected):
    server = parse_server_url(url)
    assert (server.host, server.port, server.user, server.password, server.database) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://admin@db/", "must start with postgres://"),
        ("postgres://db.lan/", "names no admin user"),
        ("postgres://admin@:5432/", "names no host"),
        ("postgres://admin@db:port/", "port is not a number"),
    ],
)
def test_bad_server_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(InvalidInput, match=message):
        parse_server_url(url)


def test_external_provisioning_sends_secrets_on_stdin_and_in_the_environment_only():
    runner = RecordingRunner()
    record = pg_record(mode="external", server_url="postgres://root:adminpw@db:5432/postgres")
    PostgresProvider(runner=runner).provision(record)
    ((argv, env, stdin),) = runner.calls
    assert not any("s3cret" in a or "adminpw" in a for a in argv)
    assert env["PGPASSWORD"] == "adminpw" and env["PGUSER"] == "root" and env["PGHOST"] == "db"
    assert "CREATE ROLE \"uabc\" LOGIN PASSWORD 's3cret''x';" in stdin
    assert 'CREATE DATABASE "dabc" OWNER "uabc";' in stdin
    assert 'REVOKE ALL ON DATABASE "dabc" FROM PUBLIC;' in stdin


def test_failed_external_provisioning_cleans_up_and_says_why():
    runner = RecordingRunner(CommandResult(1, "", "ERROR:  permission denied to create role\n"))
    record = pg_record(mode="external", server_url="postgres://root@db/")
    with pytest.raises(AddonFailed, match="Could not create the database on db:5432 as root: "
                       "ERROR:  permission denied to create role"):  # fmt: skip
        PostgresProvider(runner=runner).provision(record)
    assert "DROP DATABASE IF EXISTS" in runner.calls[-1][2]


def test_backup_and_restore_use_pg_dump_and_pg_restore_with_the_password_in_the_environment(
    tmp_path,
):
    runner = RecordingRunner()
    provider = PostgresProvider(runner=runner)
    provider.backup(pg_record(), tmp_path / "b.dump")
    provider.restore(pg_record(), tmp_path / "b.dump")
    (dump, dump_env, _), (restore, restore_env, _) = runner.calls
    assert dump[0] == "pg_dump" and f"--file={tmp_path / 'b.dump'}" in dump
    assert restore[0] == "pg_restore" and "--single-transaction" in restore
    for env in (dump_env, restore_env):
        assert env["PGPASSWORD"] == "s3cret'x" and env["PGPORT"] == "30001"


def test_a_failed_restore_says_nothing_was_changed(tmp_path):
    runner = RecordingRunner(CommandResult(1, "", "pg_restore: error: could not connect\n"))
    with pytest.raises(AddonFailed, match="nothing was changed: pg_restore: error"):
        PostgresProvider(runner=runner).restore(pg_record(), tmp_path / "b.dump")


def serve_once(reply: bytes) -> tuple[int, threading.Thread, list[bytes]]:
    """A one-connection TCP server that records what it gets and answers `reply`."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                received.append(conn.recv(4096))
                conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, received


def test_postgres_is_ready_when_it_asks_for_authentication():
    port, thread, received = serve_once(b"R\x00\x00\x00\x0c\x00\x00\x00\x0a")
    assert startup_probe("127.0.0.1", port, "uabc", "dabc", 2)
    thread.join(2)
    assert b"user\x00uabc\x00database\x00dabc\x00\x00" in received[0]


def test_postgres_is_not_ready_while_it_is_starting_up():
    port, thread, _ = serve_once(b"E\x00\x00\x00\x40SFATAL\x00C57P03\x00\x00")
    assert not startup_probe("127.0.0.1", port, "uabc", "dabc", 2)
    thread.join(2)


def test_nothing_listening_is_not_ready():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not startup_probe("127.0.0.1", port, "u", "d", 1)
    assert not ping("127.0.0.1", port, "pw", 1)


def test_redis_is_ready_when_auth_and_ping_succeed():
    port, thread, received = serve_once(b"+OK\r\n+PONG\r\n")
    assert ping("127.0.0.1", port, "pw", 2)
    thread.join(2)
    assert received[0] == b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$4\r\nPING\r\n"
    port, thread, _ = serve_once(b"-WRONGPASS invalid username-password pair\r\n")
    assert not ping("127.0.0.1", port, "pw", 2)
    thread.join(2)


def test_redis_url_and_process_keep_the_password_off_command_lines():
    record = AddonRecord(
        "a2", "redis-odd-10203", "redis", "basic", "managed", "127.0.0.1", 30002, {"password": "p"}
    )
    provider = RedisProvider()
    assert provider.credentials(record) == "redis://default:p@127.0.0.1:30002"
    process = provider.service_process(record, DEFAULT_SIZES["standard-1x"])
    assert process.env == {"WAKA_ADDON_PASSWORD": "p", "WAKA_ADDON_MAXMEMORY": "256mb"}
    assert "redis-server /tmp/redis.conf" in process.command
    assert "--requirepass" not in process.command
    with pytest.raises(AddonFailed, match="cannot live on an external server"):
        provider.provision(record)
